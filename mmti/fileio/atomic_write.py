"""Write a file so that readers see the old version or the new, never half."""
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it over ``path``.

    The rename happens only if the body finishes, after the data is flushed to
    disk, so a crash or kill mid-write leaves the previous file untouched and
    at worst a stray ``.*.tmp`` file, which is removed on a clean error.

    Examples:
        >>> with atomic_write('out.safetensors') as tmp:
        ...     safetensors.torch.save_file(tensors, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
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
