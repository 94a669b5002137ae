"""CenterCrop and RandomCrop: exact windows, bounds, seeded randomness."""
import numpy as np
import pytest

from mmti.datasets.transforms import CenterCrop, RandomCrop
from mmti.registry import TRANSFORMS


def _top_left_of(img):
    """Position encoded in the crop's first pixel (see conftest.position_image)."""
    r, g, _ = img.getpixel((0, 0))
    return g, r  # (top, left)


def _assert_window(crop, top, left, size):
    arr = np.asarray(crop)
    assert arr.shape == (size, size, 3)
    assert (arr[..., 0] == np.arange(left, left + size)[None, :]).all()
    assert (arr[..., 1] == np.arange(top, top + size)[:, None]).all()


@pytest.mark.parametrize('w,h,size', [(10, 10, 4), (12, 8, 4), (8, 12, 6), (11, 9, 4), (9, 9, 9)])
def test_center_crop_is_exact_centre(position_image, w, h, size):
    out = CenterCrop(size)({'img': position_image(w, h)})
    top, left = (h - size) // 2, (w - size) // 2
    _assert_window(out['img'], top, left, size)
    assert out['crop_top_left'] == (top, left)
    # centred: margins on either side differ by at most one pixel
    assert abs(left - (w - size - left)) <= 1 and abs(top - (h - size - top)) <= 1


def test_center_crop_even_margins_are_equal(position_image):
    out = CenterCrop(4)({'img': position_image(10, 8)})
    assert out['crop_top_left'] == (2, 3)
    _assert_window(out['img'], 2, 3, 4)


@pytest.mark.parametrize('cls', [CenterCrop, RandomCrop])
def test_crop_larger_than_image_mentions_resize(position_image, cls):
    with pytest.raises(ValueError, match=r'smaller than the crop 16.*ResizeShorterSide'):
        cls(16)({'img': position_image(20, 15), 'rng': np.random.default_rng(0)})


def test_random_crop_stays_in_bounds_and_matches_its_position(position_image):
    w, h, size = 30, 20, 12
    img = position_image(w, h)
    for seed in range(100):
        out = RandomCrop(size)({'img': img, 'rng': np.random.default_rng(seed)})
        top, left = out['crop_top_left']
        assert 0 <= top <= h - size and 0 <= left <= w - size
        _assert_window(out['img'], top, left, size)


def test_random_crop_reaches_every_position(position_image):
    img = position_image(10, 10)
    seen = {RandomCrop(8)({'img': img, 'rng': np.random.default_rng(s)})['crop_top_left']
            for s in range(300)}
    assert seen == {(t, l) for t in range(3) for l in range(3)}


def test_random_crop_same_seed_same_crop(position_image):
    img = position_image(40, 33)
    a = RandomCrop(16)({'img': img, 'rng': np.random.default_rng(77)})
    b = RandomCrop(16)({'img': img, 'rng': np.random.default_rng(77)})
    assert a['crop_top_left'] == b['crop_top_left']
    assert np.array_equal(np.asarray(a['img']), np.asarray(b['img']))


def test_random_crop_varies_with_rng(position_image):
    img = position_image(40, 33)
    positions = {RandomCrop(16)({'img': img, 'rng': np.random.default_rng(s)})['crop_top_left']
                 for s in range(20)}
    assert len(positions) >= 10


def test_random_crop_full_size_is_identity(position_image):
    img = position_image(9, 9)
    out = RandomCrop(9)({'img': img, 'rng': np.random.default_rng(0)})
    assert out['crop_top_left'] == (0, 0)
    assert np.array_equal(np.asarray(out['img']), np.asarray(img))


def test_random_crop_without_rng_creates_one(position_image):
    results = {'img': position_image(20, 20)}
    out = RandomCrop(5)(results)
    assert isinstance(out['rng'], np.random.Generator)
    assert out['img'].size == (5, 5)


def test_crop_does_not_modify_input_image(position_image):
    img = position_image(20, 20)
    before = np.asarray(img).copy()
    CenterCrop(6)({'img': img})
    RandomCrop(6)({'img': img, 'rng': np.random.default_rng(0)})
    assert np.array_equal(np.asarray(img), before)


def test_registry_build():
    assert isinstance(TRANSFORMS.build(dict(type='CenterCrop', size=3)), CenterCrop)
    rc = TRANSFORMS.build(dict(type='RandomCrop', size='7'))
    assert isinstance(rc, RandomCrop) and rc.size == 7
