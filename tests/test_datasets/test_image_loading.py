"""Concept image loading: hostile sizes refused early, memory bounded, every mode to RGB."""
import contextlib
import io
import logging
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from PIL import Image, ImageFile

from mmti.datasets import TextualInversionDataset
from mmti.datasets.image_loading import (MAX_PIXELS, ImageError, decode_image, list_concept_images,
                                         load_rgb, shorter_side_size, to_rgb)
from mmti.datasets.transforms import ResizeShorterSide
from mmti.utils import UserError
from mmti_testing import REPO_ROOT

TOKEN = '<cat-toy>'


def declared_png(path, width, height):
    """A ~70-byte PNG whose header declares ``width x height`` (its pixel data is 1x1).

    Opening it is free; decoding it would mean ``width * height`` pixels.
    """
    buf = io.BytesIO()
    Image.new('1', (1, 1)).save(buf, 'PNG')
    data = bytearray(buf.getvalue())
    # Signature (8 bytes), then the IHDR chunk: length, b'IHDR', width, height, ..., CRC.
    assert data[12:16] == b'IHDR'
    data[16:24] = struct.pack('>II', width, height)
    data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def noise(size, seed=0):
    w, h = size
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def log_lines():
    """INFO lines mmti logs through mmengine's current logger while the test runs."""
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


# --------------------------------------------------------------------------- hostile sizes


@contextlib.contextmanager
def refuse_decoding():
    """Fail if any pixel data is decoded inside the block: a refusal must come
    from the header alone."""
    real_load = ImageFile.ImageFile.load

    def load(self):
        raise AssertionError(f'{self.size} pixels were decoded before the refusal')

    ImageFile.ImageFile.load = load
    try:
        yield
    finally:
        ImageFile.ImageFile.load = real_load


def test_errors_are_one_line_user_errors_and_value_errors():
    assert issubclass(ImageError, UserError) and issubclass(ImageError, ValueError)


def test_long_strip_is_refused_by_aspect_before_decoding(tmp_path):
    path = tmp_path / 'strip.png'
    Image.new('L', (300000, 1), 128).save(path)
    assert path.stat().st_size < 1000  # tiny file, 300000 pixels wide
    with refuse_decoding(), pytest.raises(ImageError) as info:  # it took 50 s and 6 GB before
        load_rgb(path, 64)
    message = str(info.value)
    assert '\n' not in message
    assert re.search(re.escape(str(path)) + r' is 300000x1 pixels, an aspect ratio of 300000:1 '
                     r'\(more than 8:1 is refused.*crop it nearer to a square', message), message


@pytest.mark.parametrize('size,ok', [((800, 100), True), ((100, 800), True), ((900, 100), False),
                                     ((100, 901), False)])
def test_aspect_limit_is_8_to_1(tmp_path, size, ok):
    path = tmp_path / 'banner.png'
    Image.new('RGB', size, 'red').save(path)
    if ok:
        assert load_rgb(path).size == size
    else:
        with pytest.raises(ImageError, match=re.escape(str(path)) + r' is \d+x\d+ pixels'):
            load_rgb(path)


def test_dataset_aspect_limit_can_be_raised(tmp_path):
    root = tmp_path / 'pano'
    root.mkdir()
    Image.new('RGB', (900, 100), 'red').save(root / 'pano.png')
    with pytest.raises(ImageError, match='pano.png is 900x100'):
        TextualInversionDataset(root, TOKEN)
    ds = TextualInversionDataset(root, TOKEN, max_aspect_ratio=10)
    assert ds.images[0].size == (900, 100)


def test_declared_30000_squared_png_is_refused_naming_the_file(tmp_path):
    path = declared_png(tmp_path / 'bomb.png', 30000, 30000)
    assert path.stat().st_size < 100
    with refuse_decoding(), pytest.raises(ImageError) as info:
        load_rgb(path)
    message = str(info.value)
    assert '\n' not in message and 'DecompressionBomb' not in type(info.value).__name__
    assert re.search(re.escape(str(path)) + r' declares 900 megapixels, more than PIL decodes '
                     r'safely .*downscale it', message), message


def test_declared_size_over_our_limit_is_refused_before_decoding(tmp_path):
    # 100 MP: PIL would only warn; mmti refuses above MAX_PIXELS (8192 x 8192).
    path = declared_png(tmp_path / 'huge.png', 10000, 10000)
    assert 10000 * 10000 > MAX_PIXELS
    pattern = r' is 10000x10000 pixels \(100 MP\), more than the 67 MP mmti decodes; downscale'
    with pytest.raises(ImageError, match=re.escape(str(path)) + pattern):
        load_rgb(path)


def test_dataset_names_the_hostile_file_among_good_ones(tmp_path):
    root = tmp_path / 'concept'
    root.mkdir()
    noise((64, 64)).save(root / 'a.png')
    declared_png(root / 'b.png', 30000, 30000)
    with pytest.raises(ValueError, match=re.escape(str(root / 'b.png')) + ' declares'):
        TextualInversionDataset(root, TOKEN)


@pytest.mark.parametrize('name,data,reason', [
    ('empty.jpg', b'', 'the file is empty'),
    ('page.gif', b'<html>404 Not Found</html>', 'its contents are no image format Pillow knows'),
    ('head.jpg', b'\xff\xd8\xff\xe0' + b'junk' * 10, 'Truncated File Read'),
])
def test_unreadable_files_are_still_refused_with_their_name(tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageError, match=f'^Cannot read image {re.escape(str(path))}: '
                                         f'{reason}. Re-save it or remove it'):
        load_rgb(path)


# --------------------------------------------------------------------------- bounded memory


def test_big_jpeg_is_decoded_reduced_and_kept_at_the_needed_size(tmp_path):
    path = tmp_path / 'phone.jpg'
    Image.new('RGB', (6000, 4000), (200, 100, 50)).save(path, quality=90)
    decoded = decode_image(path, 512)
    assert decoded.original_size == (6000, 4000)
    assert decoded.decoded_size == (3000, 2000)  # the JPEG decoder did a quarter of the pixels
    assert decoded.image.size == (768, 512) and decoded.image.mode == 'RGB'
    assert np.abs(np.asarray(decoded.image, float).mean((0, 1)) - (200, 100, 50)).max() < 3
    # Without a needed size, the full image (the old behaviour).
    assert load_rgb(path).size == (6000, 4000)


def test_jpeg_less_than_4x_the_needed_size_is_decoded_in_full(tmp_path):
    path = tmp_path / 'photo.jpg'
    noise((1000, 800)).save(path, quality=95)
    decoded = decode_image(path, 256)
    assert decoded.decoded_size == (1000, 800)
    assert decoded.image.size == (320, 256)


def test_exif_rotated_reduced_jpeg_reports_its_upright_size(tmp_path):
    path = tmp_path / 'portrait.jpg'
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    Image.new('RGB', (4096, 3072), 'blue').save(path, exif=exif)
    decoded = decode_image(path, 256)
    assert decoded.original_size == (3072, 4096)
    assert decoded.decoded_size == (768, 1024)  # decoded at 1/4 scale, shown upright
    assert decoded.image.size == (256, 341)


def test_peak_memory_of_a_48_megapixel_jpeg_is_bounded(tmp_path):
    """The decode of an 8000x6000 photo costs a few MB, not its 144 MB as RGB."""
    path = tmp_path / 'big.jpg'
    Image.new('RGB', (8000, 6000), (90, 160, 30)).save(path, quality=85)
    script = (
        'import resource, sys\n'
        'from mmti.datasets.image_loading import decode_image\n'
        'before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n'
        'image = decode_image(sys.argv[1], 512).image\n'
        'after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n'
        'print(image.size, (after - before) // 1024)\n')
    out = subprocess.run([sys.executable, '-c', script, str(path)], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True, timeout=120).stdout.split('\n')[0]
    size, grown_mb = out.rsplit(' ', 1)
    assert size == '(683, 512)'
    assert int(grown_mb) < 40, out  # full decode: 144 MB of pixels, plus copies


def test_dataset_keeps_reduced_copies_for_a_resize_pipeline(tmp_path, log_lines):
    root = tmp_path / 'photos'
    root.mkdir()
    for k in range(3):
        Image.new('RGB', (4000, 3000), (k * 50, 90, 200)).save(root / f'{k}.jpg')
    ds = TextualInversionDataset(root, TOKEN, repeats=1, seed=0,
                                 pipeline=[dict(type='ResizeShorterSide', size=64),
                                           dict(type='CenterCrop', size=64),
                                           dict(type='PackInputs')])
    assert [im.size for im in ds.images] == [(85, 64)] * 3  # ~16 KB each, not 36 MB
    assert ds.original_sizes == [(3000, 4000)] * 3
    sample = ds[0]
    assert tuple(sample['inputs'].shape) == (3, 64, 64)
    # SDXL's size conditioning still sees the file's size (h, w), not the kept copy's.
    assert sample['time_ids'][:2].tolist() == [3000, 4000]
    assert any(re.search(r'Decoded 3 images from .*photos; kept 3 reduced to 64 px on the shorter '
                         r"side \(the pipeline's ResizeShorterSide; largest 4000x3000\)", line)
               for line in log_lines), log_lines


def test_reduction_gives_the_same_samples_as_the_full_image(tmp_path):
    """Reducing with ResizeShorterSide's own rule and filter leaves it nothing to do."""
    root = tmp_path / 'exact'
    root.mkdir()
    sources = {'a.png': noise((301, 199), 1), 'b.png': noise((150, 402), 2),
               'c.png': noise((64, 90), 3)}
    for name, img in sources.items():
        img.save(root / name)
    for interpolation in ('bicubic', 'lanczos', 'bilinear'):
        pipeline = [dict(type='ResizeShorterSide', size=64, interpolation=interpolation),
                    dict(type='CenterCrop', size=64), dict(type='PackInputs')]
        ds = TextualInversionDataset(root, TOKEN, repeats=1, seed=0, pipeline=pipeline)
        assert [im.size for im in ds.images] == [(97, 64), (64, 172), (64, 90)]
        for i, img in enumerate(sources.values()):
            reference = ds.pipeline({'img': img, 'caption': '', 'image_index': i})  # full size
            assert torch.equal(ds[i]['inputs'], reference['inputs']), (interpolation, i)
            assert torch.equal(ds[i]['time_ids'], reference['time_ids']), (interpolation, i)


def test_shorter_side_size_matches_resize_shorter_side():
    rng = np.random.default_rng(0)
    for _ in range(200):
        w, h = (int(v) for v in rng.integers(1, 500, size=2))
        side = int(rng.integers(1, 200))
        out = ResizeShorterSide(side)({'img': Image.new('L', (w, h))})['img']
        assert shorter_side_size((w, h), side) == out.size


def test_unknown_pipeline_keeps_at_most_the_default_side(tmp_path):
    root = tmp_path / 'odd'
    root.mkdir()
    Image.new('RGB', (2400, 1800), 'green').save(root / 'big.png')
    Image.new('RGB', (900, 700), 'green').save(root / 'small.png')
    ds = TextualInversionDataset(root, TOKEN, pipeline=[dict(type='PackInputs')])
    assert [im.size for im in ds.images] == [(1365, 1024), (900, 700)]
    # a transform asking for more raises the cap
    ds = TextualInversionDataset(root, TOKEN, pipeline=[dict(type='CenterCrop', size=1500)])
    assert ds.images[0].size == (2000, 1500)


# --------------------------------------------------------------------------- modes


def _grey(value, dtype, size=(32, 24)):
    return Image.fromarray(np.full(size[::-1], value, dtype=dtype))


@pytest.mark.parametrize('name,make,kwargs', [
    ('png16.png', lambda: _grey(32896, np.uint16), {}),
    ('tif16.tif', lambda: _grey(32896, np.uint16), {}),
    ('tif16b.tif', lambda: _grey(32896, np.uint16).convert('I').convert('I;16B'), {}),
    ('float01.tif', lambda: _grey(0.5, np.float32), {}),
    ('float255.tif', lambda: _grey(128.0, np.float32), {}),
    ('float65535.tif', lambda: _grey(32896.0, np.float32), {}),
    ('floatpm1.tif', lambda: _grey(0.0, np.float32), {}),  # with a -1 pixel: [-1, 1]
    ('int32_16bit.tif', lambda: _grey(32896, np.int32), {}),
    ('int32_8bit.tif', lambda: _grey(128, np.int32), {}),
])
def test_high_bit_depth_mid_grey_stays_mid_grey(tmp_path, name, make, kwargs):
    img = make()
    if name == 'floatpm1.tif':
        img.putpixel((0, 0), -1.0)
    path = tmp_path / name
    img.save(path, **kwargs)
    with Image.open(path) as check:
        assert check.mode == img.mode  # the file really holds that mode
        # Pillow's own conversion clips: the bug this guards against.
        if img.mode != 'F' and name != 'int32_8bit.tif':
            assert check.convert('RGB').getpixel((5, 5)) in {(255, 255, 255), (0, 0, 0)}
    rgb = load_rgb(path)
    assert rgb.mode == 'RGB'
    assert abs(np.asarray(rgb, float)[1:, 1:].mean() - 128) <= 1, np.asarray(rgb)[5, 5]


def test_16_bit_ramp_keeps_its_full_range_and_order(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).astype(np.uint16).reshape(32, 32)
    path = tmp_path / 'ramp.png'
    Image.fromarray(ramp).save(path)
    out = np.asarray(load_rgb(path))[..., 0].astype(int)
    assert out.min() == 0 and out.max() == 255
    assert (np.diff(out.ravel()) >= 0).all()
    assert np.abs(out - np.rint(ramp / 257)).max() == 0


def test_float_outside_the_usual_ranges_is_stretched(tmp_path):
    values = np.linspace(-500.0, 1e6, 64, dtype=np.float32).reshape(8, 8)
    path = tmp_path / 'hdr.tif'
    Image.fromarray(values).save(path)
    decoded = decode_image(path)
    out = np.asarray(decoded.image)[..., 0]
    assert out.min() == 0 and out.max() == 255
    assert decoded.range_note == 'F read as -500..1e+06'


def test_float_with_nan_is_refused(tmp_path):
    values = np.full((8, 8), 0.5, np.float32)
    values[3, 3] = np.nan
    path = tmp_path / 'nan.tif'
    Image.fromarray(values).save(path)
    with pytest.raises(ImageError, match=re.escape(str(path)) + r' \(mode F\) has NaN or infinite'):
        load_rgb(path)


def test_16_bit_transparent_value_shows_white(tmp_path):
    values = np.full((8, 8), 32896, np.uint16)
    values[:4] = 0
    path = tmp_path / 't16.png'
    Image.fromarray(values).save(path, transparency=0)
    out = np.asarray(load_rgb(path))
    assert (out[:4] == 255).all() and (out[4:] == 128).all()


RGB = (200, 30, 60)


def _palette(transparent: bool):
    img = Image.new('P', (8, 8), 1)
    img.putpalette([0, 0, 0, *RGB] + [0] * (3 * 254))
    if transparent:
        img.putpixel((0, 0), 0)
        img.info['transparency'] = 0
    return img


def _alpha(mode, alpha):
    img = Image.new('RGBA', (8, 8), (*RGB, alpha)).convert(mode)
    return img


# mode -> (image, file format or None for in memory, expected RGB at (4, 4), tolerance)
MODES = {
    '1': (lambda: Image.new('1', (8, 8), 1), 'PNG', (255, 255, 255), 0),
    'L': (lambda: Image.new('L', (8, 8), 77), 'PNG', (77, 77, 77), 0),
    'LA opaque': (lambda: Image.new('LA', (8, 8), (77, 255)), 'PNG', (77, 77, 77), 0),
    'LA clear': (lambda: Image.new('LA', (8, 8), (77, 0)), 'PNG', (255, 255, 255), 0),
    'La': (lambda: Image.new('LA', (8, 8), (100, 128)).convert('La'), None, (178, 178, 178), 1),
    'P': (lambda: _palette(False), 'PNG', RGB, 0),
    'P transparent': (lambda: _palette(True), 'PNG', RGB, 0),
    'PA': (lambda: _palette(False).convert('PA'), None, RGB, 0),
    'RGB': (lambda: Image.new('RGB', (8, 8), RGB), 'PNG', RGB, 0),
    'RGBA opaque': (lambda: _alpha('RGBA', 255), 'PNG', RGB, 0),
    'RGBA half': (lambda: _alpha('RGBA', 128), 'PNG', (227, 142, 157), 1),
    'RGBa': (lambda: _alpha('RGBa', 128), None, (227, 142, 157), 2),
    'CMYK': (lambda: Image.new('RGB', (8, 8), RGB).convert('CMYK'), 'JPEG', RGB, 3),
    'CMYK tiff': (lambda: Image.new('RGB', (8, 8), RGB).convert('CMYK'), 'TIFF', RGB, 0),
    'YCbCr': (lambda: Image.new('RGB', (8, 8), RGB).convert('YCbCr'), None, RGB, 3),
    'LAB': (lambda: Image.new('RGB', (8, 8), RGB).convert('LAB'), 'TIFF', RGB, 3),
    'HSV': (lambda: Image.new('RGB', (8, 8), RGB).convert('HSV'), None, RGB, 3),
    'I;16': (lambda: _grey(32896, np.uint16, (8, 8)), 'PNG', (128, 128, 128), 0),
    'I;16B': (lambda: _grey(32896, np.uint16, (8, 8)).convert('I').convert('I;16B'), 'TIFF',
              (128, 128, 128), 0),
    'I;16L': (lambda: _grey(65535, np.uint16, (8, 8)).convert('I').convert('I;16L'), None,
              (255, 255, 255), 0),
    'I': (lambda: _grey(32896, np.int32, (8, 8)), 'TIFF', (128, 128, 128), 0),
    'F': (lambda: _grey(0.25, np.float32, (8, 8)), 'TIFF', (64, 64, 64), 0),
}


@pytest.mark.parametrize('case', list(MODES))
def test_every_mode_converts_to_the_expected_rgb(tmp_path, case):
    make, fmt, expected, tolerance = MODES[case]
    img = make()
    if fmt is None:
        rgb, _ = to_rgb(img)
    else:
        path = tmp_path / f'img.{fmt.lower()}'
        img.save(path, fmt, **({'quality': 100} if fmt == 'JPEG' else {}))
        with Image.open(path) as check:
            assert check.mode == img.mode, (check.mode, img.mode)
        rgb = load_rgb(path)
    assert rgb.mode == 'RGB' and rgb.size == (8, 8)
    got = rgb.getpixel((4, 4))
    assert max(abs(a - b) for a, b in zip(got, expected)) <= tolerance, (got, expected)
    if case == 'P transparent':
        assert rgb.getpixel((0, 0)) == (255, 255, 255)


# --------------------------------------------------------------------------- used / skipped


def test_log_says_which_files_were_used_and_skipped(tmp_path, log_lines):
    root = tmp_path / 'mixed'
    root.mkdir()
    for name in ('b.png', 'a.jpg'):
        Image.new('RGB', (16, 16)).save(root / name)
    (root / 'notes.txt').write_text('x')
    (root / 'model.ckpt').write_bytes(b'x')
    (root / '.DS_Store').write_bytes(b'x')
    (root / '._a.jpg').write_bytes(b'x')
    (root / 'sub').mkdir()
    (root / 'gone.png').symlink_to(root / 'missing.png')
    assert [p.name for p in list_concept_images(root)] == ['a.jpg', 'b.png']
    assert log_lines == [
        f'Concept folder {root}: using 2 images (a.jpg, b.png); skipped 2 not an image by '
        'extension (model.ckpt, notes.txt); 2 hidden (.DS_Store, ._a.jpg); 2 folders or broken '
        'links, not searched (gone.png, sub)']


def test_log_lists_many_files_compactly(tmp_path, log_lines):
    root = tmp_path / 'many'
    root.mkdir()
    for k in range(30):
        Image.new('RGB', (8, 8)).save(root / f'{k:02d}.png')
        (root / f'{k:02d}.txt').write_text('a {}')
    list_concept_images(root)
    assert len(log_lines) == 1
    assert log_lines[0] == (f'Concept folder {root}: using 30 images (00.png, 01.png, 02.png, '
                            '03.png, 04.png, 05.png, 06.png, 07.png, +22 more); skipped 30 not an '
                            'image by extension (00.txt, 01.txt, 02.txt, 03.txt, 04.txt, 05.txt, '
                            '06.txt, 07.txt, +22 more)')


def test_list_concept_images_can_stay_quiet(tmp_path, log_lines):
    Image.new('RGB', (8, 8)).save(tmp_path / 'a.png')
    assert [p.name for p in list_concept_images(tmp_path, log=False)] == ['a.png']
    assert log_lines == []


def test_dataset_logs_the_range_of_high_bit_depth_images(tmp_path, log_lines):
    root = tmp_path / 'scans'
    root.mkdir()
    _grey(32896, np.uint16, (64, 64)).save(root / 'scan.png')
    Image.new('RGB', (64, 64)).save(root / 'photo.png')
    TextualInversionDataset(root, TOKEN, resolution=64)
    assert log_lines[-1] == (f'Decoded 2 images from {root}; scaled to 8 bits: '
                             'scan.png: I;16 read as 0..65535')


def test_images_far_below_the_training_size_are_named(tmp_path, log_lines):
    root = tmp_path / 'thumbs'
    root.mkdir()
    Image.new('RGB', (1, 1)).save(root / 'dot.png')
    Image.new('RGB', (48, 40)).save(root / 'small.png')  # over half: fine
    Image.new('RGB', (64, 64)).save(root / 'fine.png')
    TextualInversionDataset(root, TOKEN, resolution=64)
    assert log_lines[-1] == (f'{root}: 1 image(s) under half the training size of 64 px on the '
                             'shorter side, scaled up: dot.png (1x1). Larger images of the '
                             'concept teach finer detail.')
