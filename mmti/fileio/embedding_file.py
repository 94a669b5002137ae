"""Learned-embedding files: the diffusers layout, loaded without pickles.

A file maps each placeholder token to its rows, ``{"<tok>": tensor[n, dim]}``
(diffusers' ``learned_embeds.safetensors``). ``.bin``/``.pt`` files are read
with ``torch.load(weights_only=True)`` only: an embedding downloaded from a
stranger must never be able to run code.
"""
import os
import pickle
import re
from pathlib import Path

import safetensors.torch
import torch

from .atomic_write import atomic_write

SAFETENSORS_MAGIC_LEN = 8  # a u64 header length opens every safetensors file


def _is_safetensors(path: Path) -> bool:
    with open(path, 'rb') as f:
        head = f.read(SAFETENSORS_MAGIC_LEN + 2)
    if len(head) < SAFETENSORS_MAGIC_LEN + 2:
        return False
    header_len = int.from_bytes(head[:SAFETENSORS_MAGIC_LEN], 'little')
    return 0 < header_len < path.stat().st_size and head[SAFETENSORS_MAGIC_LEN:][:1] == b'{'


def _is_torch_file(path: Path) -> bool:
    with open(path, 'rb') as f:
        head = f.read(4)
    # torch.save writes a zip archive; before torch 1.6 a bare pickle (0x80 = PROTO).
    return head.startswith(b'PK\x03\x04') or head[:1] == b'\x80'


def _load_pickle_safely(path: Path) -> object:
    if not _is_torch_file(path):
        raise ValueError(f'{path} is neither a safetensors file nor a torch-saved file; it is '
                         'not an embedding file this library can read.')
    try:
        # A file object, not the path: torch hands paths ending in
        # .safetensors to safetensors, whatever the content.
        with open(path, 'rb') as f:
            return torch.load(f, map_location='cpu', weights_only=True)
    except RuntimeError as err:
        raise ValueError(f'{path} is a damaged or truncated torch file ({_first_line(err)}).') from None
    except pickle.UnpicklingError as err:
        raise ValueError(
            f'Refusing to load {path}: it is a pickle that needs code beyond '
            'plain tensors to load, and running such code from a file is '
            'unsafe. If you trust its author, convert it to .safetensors in an '
            f'isolated environment first. (torch said: {_first_line(err)})') from None


def _first_line(err: Exception) -> str:
    text = re.sub(r'\x1b\[[0-9;]*m', '', str(err)).strip()  # torch adds terminal colours
    return text.splitlines()[0] if text else type(err).__name__


def _as_rows(token: str, value: object, path: Path) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f'{path}: entry {token!r} is a {type(value).__name__}, not a tensor.')
    if value.ndim == 1:  # a single vector, as some tools write it
        value = value[None]
    if value.ndim != 2:
        raise ValueError(
            f'{path}: entry {token!r} has shape {tuple(value.shape)}; expected '
            '[num_vectors, dim].')
    return value


def read_embeddings(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``{token: rows[n, dim]}`` from a diffusers-style embedding file.

    The format is told by content, not extension; pickles load tensors only.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / n for n in ('learned_embeds.safetensors', 'learned_embeds.bin')]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise FileNotFoundError(
                f'{path} is a folder without learned_embeds.safetensors or '
                'learned_embeds.bin.')
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f'Embedding file {path} does not exist.')
    if _is_safetensors(path):
        data = safetensors.torch.load_file(path)
    else:
        data = _load_pickle_safely(path)
    if not isinstance(data, dict) or not data:
        raise ValueError(f'{path} holds no embeddings (expected {{"<token>": tensor[n, dim]}}).')
    return {str(k): _as_rows(str(k), v, path).float() for k, v in data.items()}


def write_embeddings(path: str | os.PathLike, embeddings: dict[str, torch.Tensor],
                     metadata: dict[str, str] | None = None) -> Path:
    """Write ``{token: rows}`` as safetensors, atomically."""
    path = Path(path)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in embeddings.items()}
    with atomic_write(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata=metadata)
    return path
