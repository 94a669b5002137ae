"""Helpers shared by the dataset and transform tests (images made in tmp_path)."""
import numpy as np
import pytest
from PIL import Image


def _position_image(width: int, height: int) -> Image.Image:
    """RGB image whose pixel (x, y) is (x, y, 7): its values say where it came from."""
    assert width <= 256 and height <= 256
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[..., 0] = np.arange(width, dtype=np.uint8)[None, :]
    arr[..., 1] = np.arange(height, dtype=np.uint8)[:, None]
    arr[..., 2] = 7
    return Image.fromarray(arr, 'RGB')


@pytest.fixture
def position_image():
    return _position_image


@pytest.fixture
def solid_image():
    def make(size=(16, 12), color=(200, 30, 60), mode='RGB'):
        return Image.new(mode, size, color)
    return make


@pytest.fixture
def concept_dir(tmp_path):
    """Three small, different RGB images (portrait, landscape, square)."""
    root = tmp_path / 'concept'
    root.mkdir()
    rng = np.random.default_rng(1234)
    for name, (w, h) in {'a.png': (48, 40), 'b.jpg': (40, 56), 'c.png': (44, 44)}.items():
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(arr, 'RGB').save(root / name, quality=95)
    return root
