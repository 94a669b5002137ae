"""One run per work dir: refuse to overwrite a run's outputs, lock while running.

Without this a second ``tools/train.py`` into a finished work dir silently
replaces its checkpoints and embeddings, and two runs at once interleave
their files. The lock is an ``fcntl.flock`` on a file in the work dir: the
kernel drops it when the process ends, however it ends, so a lock file left
behind by a SIGKILL blocks nobody.
"""
import fcntl
import os
import os.path as osp
import time
from pathlib import Path

from mmti.utils import UserError

LOCK_NAME = '.train.lock'
#: Files that mean a run already started or finished in a work dir.
OUTPUT_PATTERNS = ('last_checkpoint', 'iter_*.pth', 'epoch_*.pth', 'learned_embeds*.safetensors')


def run_outputs(work_dir: str | os.PathLike) -> list[str]:
    """Names of a previous run's outputs in ``work_dir`` (sorted; empty if none)."""
    root = Path(work_dir)
    if not root.is_dir():
        return []
    return sorted({p.name for pattern in OUTPUT_PATTERNS for p in root.glob(pattern)})


def refuse_previous_run(work_dir: str, resume: bool) -> None:
    """Refuse to start afresh where a run already left checkpoints or embeddings."""
    if resume:
        return
    found = run_outputs(work_dir)
    if found:
        shown = ', '.join(found[:3]) + (', ...' if len(found) > 3 else '')
        raise UserError(
            f'work dir {work_dir} already holds a run ({shown}); continue it with --resume, '
            'pass another --work-dir, or delete it to start over.')


class WorkDirLock:
    """An exclusive, non-blocking claim on a work dir for the length of a run.

    Args:
        work_dir: The folder; created on :meth:`acquire`.
    """

    def __init__(self, work_dir: str | os.PathLike):
        self.work_dir = str(work_dir)
        self.path = osp.join(self.work_dir, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`UserError` naming the pid that holds it."""
        os.makedirs(self.work_dir, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode('ascii', 'replace').strip() or 'unknown'
                os.close(fd)
                raise UserError(
                    f'work dir {self.work_dir} is in use by another training run (pid '
                    f'{holder}); wait for it to finish, stop it, or pass another '
                    '--work-dir.') from None
            # The holder may have unlinked the file between our open and lock;
            # then we locked an orphan and must lock the file now at the path.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        self._fd = fd
        wait_for_a_new_log_dir_name(self.work_dir)

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            os.remove(self.path)  # while still holding it: nobody can lock the orphan
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> 'WorkDirLock':
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def wait_for_a_new_log_dir_name(work_dir: str) -> None:
    """Return once mmengine's log folder name for a run starting now is unused.

    mmengine names each run's log folder after the second it started
    (``YYYYmmdd_HHMMSS``); a run started in the same second as the previous
    one (a quick ``--resume`` after a refusal) would append to that run's log.
    """
    while os.path.exists(os.path.join(work_dir, time.strftime('%Y%m%d_%H%M%S'))):
        time.sleep(0.05)
