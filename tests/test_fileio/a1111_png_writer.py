"""Test-only writer of A1111's embedding PNGs, from the format's facts (see
mmti/fileio/a1111_png.py): the reader is checked against files made here,
independently of its own code."""
import base64
import json
import zlib

import numpy as np
import torch
from PIL import Image, PngImagePlugin

# The first values of A1111's LCG stream (seed 0) as its own self-test lists them.
A1111_STREAM_START = [253, 242, 127, 44, 157, 27, 239, 133, 38, 79]


def lcg_values(count: int) -> list[int]:
    seed, out = 0, []
    for _ in range(count):
        seed = (1664525 * seed + 1013904223) % 2**32
        out.append(seed % 255)
    return out


def to_json(data: dict) -> str:
    """The embedding dict as A1111 dumps it: tensors as {"TORCHTENSOR": lists}."""
    def default(obj):
        if isinstance(obj, torch.Tensor):
            return {'TORCHTENSOR': obj.detach().cpu().tolist()}
        raise TypeError(type(obj))
    return json.dumps(data, default=default)


def a1111_dict(rows: torch.Tensor, name: str = 'cat-toy', step: int = 500) -> dict:
    return {'string_to_token': {'*': 265}, 'string_to_param': {'*': rows}, 'name': name,
            'step': step, 'sd_checkpoint': 'abcd1234', 'sd_checkpoint_name': 'v1-5'}


def picture(size=(24, 16), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(1, 256, (size[1], size[0], 3), dtype=np.uint8), 'RGB')


def text_chunk_png(path, payload: str | bytes, chunk: str = 'tEXt', image=None):
    """A PNG whose 'sd-ti-embedding' chunk holds ``payload`` (already base64)."""
    info = PngImagePlugin.PngInfo()
    payload = payload.decode() if isinstance(payload, bytes) else payload
    if chunk == 'iTXt':
        info.add_itxt('sd-ti-embedding', payload, zip=True)
    else:
        info.add_text('sd-ti-embedding', payload, zip=chunk == 'zTXt')
    (image or picture()).save(path, 'PNG', pnginfo=info)
    return path


def text_chunk_embedding_png(path, data: dict, chunk: str = 'tEXt'):
    return text_chunk_png(path, base64.b64encode(to_json(data).encode()), chunk)


def pixel_embedding_png(path, data: dict | bytes, image=None):
    """A PNG holding ``data`` only in its pixel strips (no text chunk)."""
    image = image or picture()
    raw = data if isinstance(data, bytes) else to_json(data).encode()
    packed = np.frombuffer(zlib.compress(raw, 9), np.uint8)
    h = image.size[1]
    width = -(-packed.size // (h * 3))
    packed = np.resize(packed, h * width * 3)  # repeated to fill, as A1111 does
    key = (np.array(lcg_values(packed.size), dtype=np.uint8) & 0x0F)
    # 0x50 in the high nibbles: decoration, so no strip pixel is black.
    low = ((packed & 0x0F) ^ key | 0x50).reshape(h, width, 3)
    high = ((packed >> 4) ^ key | 0x50).reshape(h, width, 3)
    black = np.zeros((h, 1, 3), np.uint8)
    whole = np.concatenate([low, black, np.asarray(image), black, high], axis=1)
    # A black frame around it all: cropped by readers, as A1111's does.
    whole = np.pad(whole, ((2, 2), (3, 3), (0, 0)))
    Image.fromarray(whole, 'RGB').save(path, 'PNG')
    return path
