"""Embeddings that AUTOMATIC1111 stores inside PNG images, read as plain data.

A1111 ("save images with embedding attached") puts the embedding dict of its
``.pt`` file into a PNG twice, and its loader reads either:

* a text chunk (tEXt, zTXt or iTXt) named ``sd-ti-embedding``: base64 of a
  JSON dump of the dict, each tensor written as ``{"TORCHTENSOR": rows}``
  (nested lists of numbers);
* the pixels: the same JSON, zlib-compressed, its bytes split into low and
  high nibbles. Each half fills an RGB strip as tall as the picture, in row
  order (the data repeated to fill it), the low nibbles to the left of the
  picture and the high ones to the right, each strip separated from it by a
  black column. Every nibble is xor-ed with the low four bits of a fixed
  linear congruential stream (seed 0, ``a=1664525``, ``c=1013904223``,
  modulus 2**32, each value taken modulo 255); the high four bits of every
  strip pixel are decoration. Black borders around the whole are cropped
  first (a pixel counts as content when all three channels are non-zero).

The text chunk is used when present, else the pixels, as A1111 does. Only
JSON is accepted: a chunk holding anything else (a pickle, a torch file,
text that is not base64) is refused with one line, never loaded.
"""
import base64
import binascii
import json
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
TEXT_KEY = 'sd-ti-embedding'
TENSOR_KEY = 'TORCHTENSOR'
# Far above any real embedding (75 SDXL vectors are ~4 MB of JSON), low
# enough that a zlib bomb in the pixels cannot exhaust memory.
MAX_JSON_BYTES = 64 * 2**20
_LCG_A, _LCG_C, _LCG_M = 1664525, 1013904223, 2**32


def is_png(path: Path) -> bool:
    """Whether ``path`` starts with the PNG signature (whatever its name)."""
    with open(path, 'rb') as f:
        return f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE


def read_png_embedding(path: Path) -> dict:
    """The embedding dict A1111 stored in the PNG at ``path``, tensors as tensors.

    Raises:
        ValueError: One line naming the file, when it is damaged, holds no
            embedding, or holds anything but the JSON A1111 writes.
    """
    try:
        with Image.open(path) as image:
            image.load()  # text chunks after the image data are read only now
            text = dict(getattr(image, 'text', {}) or {})
            pixels = None if TEXT_KEY in text else np.asarray(image.convert('RGB'), np.uint8)
    # PIL's ValueError too: a compressed text chunk over its 1 MB limit.
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise ValueError(f'{path} is a damaged PNG, or one PIL refuses to read ({err}); '
                         're-download it.') from None
    data = _from_text_chunk(text[TEXT_KEY], path) if pixels is None else _from_pixels(pixels, path)
    if data is None:
        raise ValueError(f'{path} is a PNG without an embedding: no {TEXT_KEY!r} text chunk and '
                         'no data strips in its pixels (an ordinary picture or a preview?).')
    return data


def _from_text_chunk(text: str | bytes, path: Path) -> dict:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f'Refusing {path}: its {TEXT_KEY!r} text chunk is not base64 '
                         '(A1111 writes base64 of JSON); it is not an embedding.') from None
    return _parse_json(raw, path, f'its {TEXT_KEY!r} text chunk')


def _parse_json(raw: bytes, path: Path, where: str) -> dict:
    if raw[:1] == b'\x80' or raw[:4] == b'PK\x03\x04':
        raise ValueError(f'Refusing {path}: {where} holds a pickle or torch file, not the JSON '
                         'A1111 writes; loading it could run code.')
    try:
        data = json.loads(raw.decode('utf-8'), object_hook=_tensor_hook)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError(f'Refusing {path}: {where} is not the JSON A1111 writes; it is not an '
                         'embedding.') from None
    if not isinstance(data, dict):
        raise ValueError(f'{path}: {where} holds a JSON {type(data).__name__}, not an embedding '
                         'dict.')
    return data


def _tensor_hook(obj: dict):
    if TENSOR_KEY not in obj:
        return obj
    try:
        # float64: A1111 writes float32 values as Python floats, which JSON
        # keeps exactly; the float32 rows come back bit for bit.
        return torch.tensor(obj[TENSOR_KEY], dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        # json's own ValueError subclass, so the caller's one line applies.
        raise json.JSONDecodeError(f'{TENSOR_KEY} is not a table of numbers', '', 0) from None


def _key_stream(size: int) -> np.ndarray:
    """The nibbles A1111 xors its pixel data with (low 4 bits of its LCG)."""
    out = np.empty(size, dtype=np.uint8)
    seed = 0
    for i in range(size):
        seed = (_LCG_A * seed + _LCG_C) % _LCG_M
        out[i] = (seed % 255) & 0x0F
    return out


def _crop_black(pixels: np.ndarray) -> np.ndarray | None:
    content = (pixels > 0).all(axis=2)
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if rows.size == 0:
        return None
    return pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _from_pixels(pixels: np.ndarray, path: Path) -> dict | None:
    """The embedding in the data strips of RGB ``pixels``, or None when they hold none."""
    pixels = _crop_black(pixels)
    if pixels is None:
        return None
    nibbles = pixels & 0x0F
    black = np.flatnonzero(nibbles.sum(axis=(0, 2)) == 0)
    if black.size < 2:
        return None
    low, high = nibbles[:, :black[0]], nibbles[:, black[-1] + 1:]
    if low.size == 0 or low.shape != high.shape:
        return None
    key = _key_stream(low.size).reshape(low.shape)
    packed = (((high ^ key) << 4) | (low ^ key)).astype(np.uint8).tobytes()
    decompressor = zlib.decompressobj()
    try:
        raw = decompressor.decompress(packed, MAX_JSON_BYTES)
    except zlib.error:
        return None  # black columns in an ordinary picture, not data strips
    if not decompressor.eof and not decompressor.unconsumed_tail:
        return None  # a stream cut short: not data strips either
    if decompressor.unconsumed_tail:
        raise ValueError(f'Refusing {path}: the data in its pixels unpacks to more than '
                         f'{MAX_JSON_BYTES >> 20} MiB; no embedding is that large.')
    return _parse_json(raw, path, 'the data in its pixels')
