"""Check an output folder before hours of work go into filling it."""
import os
from pathlib import Path


def check_output_dir(folder: str | os.PathLike, option: str = '--out-dir') -> None:
    """Fail with a one-line message if ``folder`` cannot be created or written.

    Nothing is created: the nearest existing ancestor must be a folder the
    user may write to (``os.access``, which root passes regardless of mode
    bits).

    Args:
        folder: The output folder (may not exist yet).
        option: The option that named it, for the fix in the message.

    Raises:
        NotADirectoryError: ``folder`` or an ancestor is a file.
        PermissionError: the folder (or where it would be made) is read-only.
    """
    path = Path(folder).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f'{option} {folder}: {existing} is a file, not a folder; '
                                 f'pass another {option}.')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f'{option} {folder} is not writable ({existing} denies it); pass '
                              f'{option} with a folder you can write to.')
