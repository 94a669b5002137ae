"""ResizeShorterSide: shorter side becomes exactly `size`, aspect ratio kept."""
import numpy as np
import pytest
from PIL import Image

from mmti.datasets.transforms import ResizeShorterSide
from mmti.registry import TRANSFORMS


def _run(img, size, **kw):
    return ResizeShorterSide(size, **kw)({'img': img})


@pytest.mark.parametrize('src,size,expected', [
    ((200, 100), 128, (256, 128)),   # landscape, upscale
    ((100, 200), 128, (128, 256)),   # portrait, upscale
    ((300, 200), 100, (150, 100)),   # downscale
    ((96, 96), 64, (64, 64)),        # square
    ((128, 96), 512, (683, 512)),    # 682.67 rounds to 683
    ((1000, 3), 2, (667, 2)),        # extreme aspect ratio
])
def test_shorter_side_and_aspect(solid_image, src, size, expected):
    out = _run(solid_image(src), size)
    assert out['img'].size == expected
    assert min(out['img'].size) == size
    assert out['original_size'] == (src[1], src[0])  # (h, w)


def test_fuzz_shorter_side_exact_and_aspect_within_rounding(solid_image):
    rng = np.random.default_rng(0)
    for _ in range(60):
        w, h = (int(v) for v in rng.integers(1, 120, size=2))
        size = int(rng.integers(1, 64))
        nw, nh = _run(solid_image((w, h)), size)['img'].size
        assert min(nw, nh) == size
        if w <= h:
            assert nw == size and abs(nh - h * size / w) <= 0.5 + 1e-9
        else:
            assert nh == size and abs(nw - w * size / h) <= 0.5 + 1e-9


def test_already_right_size_is_untouched(solid_image):
    img = solid_image((64, 100))
    out = _run(img, 64)
    assert out['img'] is img


def test_content_is_scaled_not_cropped():
    # left half black, right half white; after resize the halves stay halves
    arr = np.zeros((50, 100, 3), np.uint8)
    arr[:, 50:] = 255
    out = np.asarray(_run(Image.fromarray(arr), 25, interpolation='nearest')['img'])
    assert out.shape == (25, 50, 3)
    assert (out[:, :25] == 0).all() and (out[:, 25:] == 255).all()


@pytest.mark.parametrize('name,flt', [('nearest', Image.Resampling.NEAREST),
                                      ('bilinear', Image.Resampling.BILINEAR),
                                      ('bicubic', Image.Resampling.BICUBIC),
                                      ('lanczos', Image.Resampling.LANCZOS)])
def test_interpolation_is_used(position_image, name, flt):
    img = position_image(40, 30)
    out = _run(img, 45, interpolation=name)['img']
    assert np.array_equal(np.asarray(out), np.asarray(img.resize((60, 45), flt)))


def test_default_interpolation_is_bicubic(position_image):
    img = position_image(40, 30)
    out = _run(img, 45)['img']
    assert np.array_equal(np.asarray(out), np.asarray(img.resize((60, 45), Image.Resampling.BICUBIC)))


def test_unknown_interpolation_message():
    with pytest.raises(ValueError, match=r"interpolation must be one of \['bicubic', 'bilinear', "
                                         r"'lanczos', 'nearest'\], got 'area'"):
        ResizeShorterSide(64, interpolation='area')


def test_other_keys_pass_through(solid_image):
    results = {'img': solid_image((20, 10)), 'caption': 'c', 'rng': 1}
    out = ResizeShorterSide(5)(results)
    assert out['caption'] == 'c' and out['rng'] == 1


def test_registry_build(solid_image):
    t = TRANSFORMS.build(dict(type='ResizeShorterSide', size=8, interpolation='nearest'))
    assert isinstance(t, ResizeShorterSide)
    assert t({'img': solid_image((16, 32))})['img'].size == (8, 16)
