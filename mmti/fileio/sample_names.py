"""File names of sampled images, shared by tools/infer.py and its readers.

An image is named after its prompt, seed and index
(``a_cat_toy_bag_seed0_1.png``). Prompts that differ only in punctuation or
case share a name, and an earlier run may have left a file of that name, so
a sample is never written over an existing file: it gets the next free name
``..._seed0_1-2.png``, ``-3``, ... (``-`` never occurs in a first name, so the
two kinds cannot collide). Callers report the name actually written.
"""
import os
import re
import tempfile
from pathlib import Path


def prompt_slug(prompt: str, limit: int = 60) -> str:
    """The prompt as a safe file-name part: runs of other characters become '_'."""
    return re.sub(r'[^a-zA-Z0-9]+', '_', prompt).strip('_')[:limit] or 'prompt'


def sample_filename(prompt: str, seed: int, index: int, copy: int = 1) -> str:
    """E.g. ``a_cat_toy_bag_seed0_1.png``: image ``index`` of ``prompt`` at ``seed``.

    ``copy`` > 1 names the copy-th file that would otherwise get this name
    (``a_cat_toy_bag_seed0_1-2.png``).
    """
    suffix = f'-{copy}' if copy > 1 else ''
    return f'{prompt_slug(prompt)}_seed{seed}_{index}{suffix}.png'


def save_new_sample(image, folder: str | os.PathLike, prompt: str, seed: int,
                    index: int) -> Path:
    """Save a PIL image as PNG under the first free name; never replace a file.

    The image is written to a temporary file first and then hard-linked to
    its name, which fails instead of replacing when the name is taken (also
    by another process meanwhile); readers never see half a PNG.

    Returns:
        The path written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix='.sample.', suffix='.png.tmp', dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, 'wb') as f:
            image.save(f, format='PNG')
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private; give it the permissions open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        copy = 1
        while True:
            path = folder / sample_filename(prompt, seed, index, copy)
            if not path.exists() and _link_new(tmp, path):
                return path
            copy += 1
    finally:
        tmp.unlink(missing_ok=True)


def _link_new(tmp: Path, path: Path) -> bool:
    """Give ``tmp``'s data the name ``path`` unless that exists; False if taken."""
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        # A file system without hard links: the exists() check just made is
        # the guard (a race with another writer is then possible).
        os.replace(tmp, path)
        return True
