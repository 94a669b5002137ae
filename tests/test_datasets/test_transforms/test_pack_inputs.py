"""PackInputs: PIL image -> float32 [3, H, W] in [-1, 1], plus caption and noise seed."""
import numpy as np
import pytest
import torch
from PIL import Image

from mmti.datasets.transforms import PackInputs
from mmti.registry import TRANSFORMS


def _pack(img, **extra):
    return PackInputs()({'img': img, 'caption': 'a photo of a <t>', 'noise_seed': 1234, **extra})


def test_shape_dtype_and_keys(solid_image):
    out = _pack(solid_image((5, 3)))   # W=5, H=3
    assert set(out) == {'inputs', 'captions', 'noise_seeds', 'latent_keys', 'time_ids'}
    t = out['inputs']
    assert isinstance(t, torch.Tensor)
    assert t.dtype == torch.float32
    assert tuple(t.shape) == (3, 3, 5)
    assert t.is_contiguous()


def test_black_is_exactly_minus_one(solid_image):
    t = _pack(solid_image((4, 4), (0, 0, 0)))['inputs']
    assert t.min().item() == -1.0 and t.max().item() == -1.0


def test_white_is_exactly_one(solid_image):
    t = _pack(solid_image((4, 4), (255, 255, 255)))['inputs']
    assert t.min().item() == 1.0 and t.max().item() == 1.0


def test_full_range_maps_linearly():
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16)
    t = _pack(Image.fromarray(np.stack([arr] * 3, -1)))['inputs']
    expected = torch.from_numpy(arr.astype(np.float32)) / 127.5 - 1
    assert torch.allclose(t[0], expected, atol=1e-6)
    assert t.min().item() == -1.0 and t.max().item() == 1.0


def test_channel_and_spatial_order():
    arr = np.zeros((3, 5, 3), np.uint8)  # H=3, W=5
    arr[0, 4] = (255, 0, 0)   # red at x=4, y=0
    arr[2, 1] = (0, 255, 0)   # green at x=1, y=2
    arr[1, 0] = (0, 0, 255)   # blue at x=0, y=1
    t = _pack(Image.fromarray(arr))['inputs']
    assert t[:, 0, 4].tolist() == [1.0, -1.0, -1.0]
    assert t[:, 2, 1].tolist() == [-1.0, 1.0, -1.0]
    assert t[:, 1, 0].tolist() == [-1.0, -1.0, 1.0]
    assert t[:, 0, 0].tolist() == [-1.0, -1.0, -1.0]


@pytest.mark.parametrize('mode,color,expected', [
    ('L', 255, [1.0, 1.0, 1.0]),
    ('RGBA', (255, 0, 0, 0), [1.0, -1.0, -1.0]),   # alpha dropped
    ('RGB', (51, 102, 204), [51 / 127.5 - 1, 102 / 127.5 - 1, 204 / 127.5 - 1]),
])
def test_other_modes_become_three_channels(solid_image, mode, color, expected):
    t = _pack(solid_image((3, 2), color, mode))['inputs']
    assert tuple(t.shape) == (3, 2, 3)
    assert torch.allclose(t[:, 1, 2], torch.tensor(expected), atol=1e-6)


def test_caption_and_noise_seed_carried(solid_image):
    out = _pack(solid_image((2, 2)))
    assert out['captions'] == 'a photo of a <t>'
    assert out['noise_seeds'] == 1234


def test_missing_noise_seed_is_none(solid_image):
    out = PackInputs()({'img': solid_image((2, 2)), 'caption': 'x'})
    assert out['noise_seeds'] is None


def test_missing_caption_is_an_error(solid_image):
    with pytest.raises(KeyError, match='caption'):
        PackInputs()({'img': solid_image((2, 2))})


def test_rng_and_paths_are_not_packed(solid_image):
    out = _pack(solid_image((2, 2)), rng=np.random.default_rng(0), img_path='/x.png')
    assert 'rng' not in out and 'img_path' not in out and 'img' not in out


def test_tensor_does_not_share_memory_with_image(solid_image):
    img = solid_image((4, 4), (10, 20, 30))
    t = _pack(img)['inputs']
    t.fill_(0)
    assert img.getpixel((0, 0)) == (10, 20, 30)
    assert torch.equal(_pack(img)['inputs'][:, 0, 0], torch.tensor([10, 20, 30]) / 127.5 - 1)


def test_registry_build(solid_image):
    t = TRANSFORMS.build(dict(type='PackInputs'))
    assert isinstance(t, PackInputs)
    assert tuple(t({'img': solid_image((3, 4)), 'caption': ''})['inputs'].shape) == (3, 4, 3)
