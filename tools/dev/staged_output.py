"""Output helpers of the data generators: staged folders, permissions, JSON.

A generator writes into a temporary folder beside its target, which replaces
the target only when everything is written, so an interrupted run never leaves
a half-built data folder. ``mmti.fileio.atomic_write`` does this for single
files; this is the same for whole folders.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def is_nonempty_dir(path: Path) -> bool:
    """Whether ``path`` exists and is something other than an empty folder."""
    if not path.exists():
        return False
    return not path.is_dir() or any(path.iterdir())


def make_world_readable(root: Path) -> None:
    """Give ``root`` and everything under it the usual 755/644 permissions.

    ``mkdtemp`` (and some weight writers) create private 700/600 entries,
    which would make the committed data unreadable to other local users.

    Args:
        root: Folder to fix up, recursively.
    """
    umask = os.umask(0)
    os.umask(umask)  # reading the umask requires setting it; restore at once
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = 0o755 if path.is_dir() else 0o644
        path.chmod(mode & ~umask)


@contextmanager
def staged_output(final: Path, force: bool) -> Iterator[Path]:
    """Give a temporary folder that replaces ``final`` only on success.

    The temporary folder sits next to ``final`` so the final move is a rename
    on the same filesystem; an interrupted run leaves ``final`` untouched. The
    result gets the usual permissions (see :func:`make_world_readable`), not
    the private ones ``mkdtemp`` gives.

    Args:
        final: Folder to produce.
        force: Replace ``final`` if it already has content.

    Yields:
        The temporary folder to write into.

    Raises:
        FileExistsError: If ``final`` has content and ``force`` is false.
    """
    if is_nonempty_dir(final) and not force:
        raise FileExistsError(f"{final} exists and is not empty; pass --force to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield staging
        make_world_readable(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if final.exists() or final.is_symlink():
        # Move the old output aside first so there is never a moment without
        # a complete folder at ``final``'s path beyond the two renames.
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        final.rename(old)
    staging.rename(final)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


def folder_size(path: Path) -> int:
    """Total size in bytes of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_json(path: Path, data: dict, *, indent: int | None = 2) -> None:
    """Write ``data`` as UTF-8 JSON with a trailing newline."""
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
