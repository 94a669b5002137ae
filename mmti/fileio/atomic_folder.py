"""Replace a whole folder so that readers see the old version or the new, never half."""
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def make_world_readable(root: Path) -> None:
    """Give ``root`` and everything under it the usual 755/644 permissions (minus umask).

    ``mkdtemp`` (and some weight writers) create private 700/600 entries,
    which would leave the result unreadable to other users.
    """
    umask = os.umask(0)
    os.umask(umask)  # reading the umask means setting it; restored at once
    for path in [root, *root.rglob('*')]:
        if not path.is_symlink():
            path.chmod((0o755 if path.is_dir() else 0o644) & ~umask)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` that replaces ``path`` on success.

    On an error inside the block the temporary folder is removed and any
    previous ``path`` is left as it was. On success the old folder is moved
    aside, the new one renamed into place (same filesystem: a rename), and
    the old one deleted, so ``path`` is only ever missing between two renames.

    Examples:
        >>> with atomic_folder('export') as tmp:
        ...     model.save_pretrained(tmp)
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f'.{final.name}.{os.getpid()}.', suffix='.tmp',
                                    dir=final.parent))
    try:
        yield staging
        make_world_readable(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if final.exists() or final.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f'.{final.name}.{os.getpid()}.', suffix='.old',
                                    dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
