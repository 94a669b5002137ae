"""tools/train.py on hostile or unusual concept images: one line naming the file, nothing lost.

Each refused case puts the bad file beside a good image, runs tools/train.py
in-process on a work dir that already holds a result, and asserts the exit
status, the one-line message (naming the file and what is wrong) and that
the work dir and the concept folder are byte-identical afterwards.
"""
import io
import struct
import zlib

import numpy as np
import pytest
from fault_matrix import assert_kept, assert_refused, snapshot
from PIL import Image
from tool_runner import TINY_CONFIG, load_tool


PROG = 'tools/train.py'


def train_cli(argv, capsys) -> tuple[int, str]:
    """Run tools/train.py's command line in-process; ``(exit status, stderr)``."""
    train = load_tool('train')
    capsys.readouterr()
    try:
        train.cli(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def declared_png(width, height) -> bytes:
    """A tiny PNG whose header declares ``width x height`` pixels."""
    data = bytearray(_png(Image.new('1', (1, 1))))
    data[16:24] = struct.pack('>II', width, height)
    data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, 'PNG')
    return buf.getvalue()


def _encoded(img, fmt, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _noise_png() -> bytes:
    rng = np.random.default_rng(0)
    return _png(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))


def _broken_idat() -> bytes:
    data = bytearray(_noise_png())
    start = data.index(b'IDAT')
    length = struct.unpack('>I', data[start - 4:start])[0]
    data[start + 10:start + 40] = bytes(30)  # corrupt the deflate stream ...
    end = start + 4 + length
    data[end:end + 4] = struct.pack('>I', zlib.crc32(bytes(data[start:end])))  # ... not the CRC
    return bytes(data)


def _nan_tiff() -> bytes:
    values = np.full((32, 32), 0.5, np.float32)
    values[7, 7] = np.nan
    return _encoded(Image.fromarray(values), 'TIFF')


# case -> (files to add beside a good a.png, regex of the last stderr line)
CASES = {
    '300000x1 strip': ({'strip.png': lambda: _png(Image.new('L', (300000, 1), 128))},
                       r'strip\.png is 300000x1 pixels, an aspect ratio of 300000:1 .*crop it'),
    '9:1 banner': ({'banner.jpg': lambda: _encoded(Image.new('RGB', (900, 100)), 'JPEG')},
                   r'banner\.jpg is 900x100 pixels, an aspect ratio of 9:1 \(more than 8:1'),
    'declares 30000x30000': ({'bomb.png': lambda: declared_png(30000, 30000)},
                             r'bomb\.png declares 900 megapixels, more than PIL decodes safely '
                             r'.*downscale it'),
    'declares 10000x10000': ({'huge.png': lambda: declared_png(10000, 10000)},
                             r'huge\.png is 10000x10000 pixels \(100 MP\), more than the 67 MP '
                             r'mmti decodes; downscale it'),
    'declares 0 width': ({'zero.png': lambda: declared_png(0, 16)},
                         r'Cannot read image .*zero\.png: its contents are no image format'),
    'truncated png': ({'half.png': lambda: _noise_png()[:len(_noise_png()) // 2]},
                      r'Cannot read image .*half\.png: .*Re-save it or remove it'),
    'broken deflate data': ({'broken.png': _broken_idat},
                            r'Cannot read image .*broken\.png: broken data stream'),
    'empty jpg': ({'empty.jpg': lambda: b''}, r'Cannot read image .*empty\.jpg: the file is empty'),
    'jpeg header only': ({'head.jpg': lambda: b'\xff\xd8\xff\xe0' + b'junk' * 10},
                         r'Cannot read image .*head\.jpg: Truncated File Read'),
    'html saved as gif': ({'page.gif': lambda: b'<html><body>404 Not Found</body></html>'},
                          r'Cannot read image .*page\.gif: its contents are no image format'),
    'text named png': ({'notes.png': lambda: b'remember to buy milk\n'},
                       r'Cannot read image .*notes\.png: its contents are no image format'),
    'junk webp': ({'junk.webp': lambda: b'RIFF\x10\x00\x00\x00WEBPVP8 ' + bytes(20)},
                  r'Cannot read image .*junk\.webp'),
    'float tiff with NaN': ({'nan.tif': _nan_tiff},
                            r'nan\.tif \(mode F\) has NaN or infinite pixel values'),
}


@pytest.fixture
def work_dir(tmp_path):
    folder = tmp_path / 'work'
    folder.mkdir()
    (folder / 'notes.txt').write_text('my notes, not a run of mmti')
    return folder


@pytest.mark.parametrize('case', list(CASES))
def test_bad_image_is_refused_naming_the_file(case, tmp_path, work_dir, capsys):
    files, pattern = CASES[case]
    concept = tmp_path / 'concept'
    concept.mkdir()
    (concept / 'a.png').write_bytes(_noise_png())
    for name, make in files.items():
        (concept / name).write_bytes(make())
    kept_work, kept_concept = snapshot(work_dir), snapshot(concept)
    code, stderr = train_cli([TINY_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
                              f'train_dataloader.dataset.data_root={concept}'], capsys)
    assert_refused(code, stderr, PROG, pattern)
    assert_kept(kept_work, work_dir)
    assert sorted(p.name for p in work_dir.iterdir()) == ['notes.txt']
    assert_kept(kept_concept, concept)


def test_folder_of_only_hidden_files_folders_and_broken_links(tmp_path, work_dir, capsys):
    concept = tmp_path / 'concept'
    concept.mkdir()
    (concept / '._a.png').write_bytes(_noise_png())  # macOS resource fork: hidden
    (concept / 'sub').mkdir()
    (concept / 'gone.png').symlink_to(tmp_path / 'moved-away.png')
    kept = snapshot(work_dir)
    code, stderr = train_cli([TINY_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
                              f'train_dataloader.dataset.data_root={concept}'], capsys)
    assert_refused(code, stderr, PROG, r"concept has no images .*found: \['gone\.png', 'sub'\]")
    assert_kept(kept, work_dir)


def test_unusual_but_valid_images_train(tmp_path, work_dir, capsys):
    """16-bit, float, CMYK, palette with transparency, EXIF-rotated and a large photo."""
    concept = tmp_path / 'concept'
    concept.mkdir()
    Image.fromarray(np.full((96, 80), 32896, np.uint16)).save(concept / 'scan16.png')
    Image.fromarray(np.full((80, 96), 0.5, np.float32)).save(concept / 'render.tif')
    Image.new('RGB', (90, 90), (200, 30, 60)).convert('CMYK').save(concept / 'print.jpg')
    palette = Image.new('P', (72, 72), 1)
    palette.putpalette([0, 0, 0, 250, 120, 5] + [0] * 762)
    palette.save(concept / 'sticker.png', transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new('RGB', (2000, 1500), 'blue').save(concept / 'phone.jpg', exif=exif)
    (concept / 'notes.txt').write_text('shot on a phone')
    kept_work, kept_concept = snapshot(work_dir), snapshot(concept)
    code, stderr = train_cli([TINY_CONFIG, '--work-dir', str(work_dir / 'run'), '--cfg-options',
                              f'train_dataloader.dataset.data_root={concept}',
                              'train_cfg.max_iters=1', 'train_dataloader.batch_size=1',
                              'default_hooks.validation_samples.interval=1000'], capsys)
    assert code == 0, stderr[-3000:]
    assert_kept(kept_work, work_dir)
    assert_kept(kept_concept, concept)
    assert (work_dir / 'run' / 'learned_embeds.safetensors').is_file()
    out = '\n'.join(p.read_text() for p in (work_dir / 'run').glob('*/*.log'))
    assert (f'Concept folder {concept}: using 5 images (phone.jpg, print.jpg, render.tif, '
            'scan16.png, sticker.png); skipped 1 not an image by extension (notes.txt)') in out
    assert ('scaled to 8 bits: render.tif: F read as 0..1, scan16.png: I;16 read as 0..65535'
            in out)
