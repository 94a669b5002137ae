"""Write a file so that readers see the old version or the new, never half."""
import contextlib
import fnmatch
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path


def temp_prefix(path: Path) -> str:
    """The start of every temporary name for ``path`` made by this process.

    The process id is part of the name so that a later run can tell the
    leftovers of a killed process (see :func:`remove_stale_temps`) from the
    files of a process still writing; ``mkstemp`` adds random characters and
    creates the file exclusively, so two processes (or threads) never share
    a name even if the pid is reused.
    """
    return f'.{path.name}.{os.getpid()}.'


_TEMP_NAME = re.compile(r'^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$')


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, pattern: str = '*') -> list[Path]:
    """Delete temporary files that killed writers left in ``folder``.

    A SIGKILL or power cut mid-write cannot run the cleanup of
    :func:`atomic_write`, so a ``.<name>.<pid>.<random>.tmp`` may remain.
    Only such files whose ``<name>`` matches ``pattern`` (a glob) and whose
    process no longer runs on this machine are removed.

    Returns:
        The removed files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for candidate in folder.iterdir():
        match = _TEMP_NAME.match(candidate.name)
        if not match or not fnmatch.fnmatchcase(match.group('name'), pattern):
            continue
        pid = int(match.group('pid'))
        if pid != os.getpid() and not _pid_alive(pid) and candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it over ``path``.

    The rename happens only if the body finishes, after the data is flushed to
    disk, so a crash or kill mid-write leaves the previous file untouched. On
    any error (Ctrl-C included) the temporary file is removed; only a kill
    that gives no chance to clean up leaves a ``.<name>.<pid>.<random>.tmp``,
    which :func:`remove_stale_temps` deletes later.

    Examples:
        >>> with atomic_write('out.safetensors') as tmp:
        ...     safetensors.torch.save_file(tensors, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path), suffix='.tmp', dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private; give it the permissions open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
