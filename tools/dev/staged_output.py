"""Output helpers of the data generators: staged folders, sizes, JSON.

A generator writes into a temporary folder beside its target, which replaces
the target only when everything is written (``mmti.fileio.atomic_folder``),
so an interrupted run never leaves a half-built data folder.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout
from mmti.fileio import atomic_folder  # noqa: E402


def is_nonempty_dir(path: Path) -> bool:
    """Whether ``path`` exists and is something other than an empty folder."""
    if not path.exists():
        return False
    return not path.is_dir() or any(path.iterdir())


@contextmanager
def staged_output(final: Path, force: bool) -> Iterator[Path]:
    """Give a temporary folder that replaces ``final`` only on success
    (:func:`mmti.fileio.atomic_folder`, usual permissions).

    Raises:
        FileExistsError: If ``final`` has content and ``force`` is false.
    """
    if is_nonempty_dir(final) and not force:
        raise FileExistsError(f"{final} exists and is not empty; pass --force to replace it")
    with atomic_folder(final) as staging:
        yield staging


def folder_size(path: Path) -> int:
    """Total size in bytes of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_json(path: Path, data: dict, *, indent: int | None = 2) -> None:
    """Write ``data`` as UTF-8 JSON with a trailing newline."""
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
