"""RandomHorizontalFlip: probability, exact mirror, seeded randomness."""
import numpy as np
import pytest
from PIL import ImageOps

from mmti.datasets.transforms import RandomHorizontalFlip
from mmti.registry import TRANSFORMS


def _flips(prob, n, img):
    flip = RandomHorizontalFlip(prob)
    return [flip({'img': img, 'rng': np.random.default_rng(s)})['flipped'] for s in range(n)]


def test_half_of_the_samples_flip(solid_image):
    flips = _flips(0.5, 2000, solid_image((2, 1)))
    # Binomial(2000, 0.5): sd ~ 22, so [900, 1100] is a > 4.4 sigma band
    assert 900 <= sum(flips) <= 1100


def test_default_prob_is_half():
    assert RandomHorizontalFlip().prob == 0.5


def test_prob_is_respected(solid_image):
    flips = _flips(0.2, 2000, solid_image((2, 1)))
    assert 300 <= sum(flips) <= 500  # mean 400, sd ~ 18


def test_prob_zero_never_flips(position_image):
    img = position_image(7, 3)
    for s in range(300):
        out = RandomHorizontalFlip(0.0)({'img': img, 'rng': np.random.default_rng(s)})
        assert out['flipped'] is False
        assert np.array_equal(np.asarray(out['img']), np.asarray(img))


def test_prob_one_always_flips_to_the_mirror(position_image):
    img = position_image(7, 3)
    mirror = np.asarray(ImageOps.mirror(img))
    for s in range(300):
        out = RandomHorizontalFlip(1.0)({'img': img, 'rng': np.random.default_rng(s)})
        assert out['flipped'] is True
        assert np.array_equal(np.asarray(out['img']), mirror)
    # the mirror really is left-right: first column now holds x = 6
    assert (mirror[:, 0, 0] == 6).all() and (mirror[:, :, 1] == np.arange(3)[:, None]).all()


def test_same_seed_same_decision(position_image):
    img = position_image(5, 5)
    for s in range(50):
        a = RandomHorizontalFlip()({'img': img, 'rng': np.random.default_rng(s)})
        b = RandomHorizontalFlip()({'img': img, 'rng': np.random.default_rng(s)})
        assert a['flipped'] == b['flipped']
        assert np.array_equal(np.asarray(a['img']), np.asarray(b['img']))


def test_flip_does_not_modify_input(position_image):
    img = position_image(5, 4)
    before = np.asarray(img).copy()
    RandomHorizontalFlip(1.0)({'img': img, 'rng': np.random.default_rng(0)})
    assert np.array_equal(np.asarray(img), before)


def test_without_rng_creates_one(position_image):
    out = RandomHorizontalFlip()({'img': position_image(3, 3)})
    assert isinstance(out['rng'], np.random.Generator)
    assert isinstance(out['flipped'], bool)


@pytest.mark.parametrize('prob', [-0.1, 1.5])
def test_prob_out_of_range_message(prob):
    with pytest.raises(ValueError, match=rf'prob must be in \[0, 1\], got {prob}'):
        RandomHorizontalFlip(prob)


def test_registry_build():
    t = TRANSFORMS.build(dict(type='RandomHorizontalFlip', prob=1.0))
    assert isinstance(t, RandomHorizontalFlip) and t.prob == 1.0
