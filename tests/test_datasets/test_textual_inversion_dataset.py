"""TextualInversionDataset: image discovery, errors, captions, determinism, registry."""
import itertools
import re
import shutil
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmti.datasets  # noqa: F401  (registers the dataset and transforms)
from mmti.datasets import SeededInfiniteSampler, TextualInversionDataset
from mmti.datasets.textual_inversion_dataset import (IMAGE_EXTENSIONS, list_concept_images,
                                                     load_rgb)
from mmti.registry import DATASETS

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / 'mmti' / 'datasets' / 'caption_templates'
TOKEN = '<cat-toy>'


def _templates(name):
    return [ln.strip() for ln in (REPO_TEMPLATES / name).read_text().splitlines() if ln.strip()]


def _random_pipeline(size=24):
    return [dict(type='ResizeShorterSide', size=32), dict(type='RandomCrop', size=size),
            dict(type='RandomHorizontalFlip'), dict(type='PackInputs')]


def _save_random(path, size, mode='RGB', seed=0, **save_kwargs):
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(arr, 'RGB').convert(mode).save(path, **save_kwargs)


# --------------------------------------------------------------------------- image discovery


@pytest.fixture
def mixed_dir(tmp_path):
    root = tmp_path / 'mixed'
    root.mkdir()
    _save_random(root / 'b.PNG', (20, 16), seed=1, format='PNG')
    _save_random(root / 'a.Jpg', (16, 20), seed=2, format='JPEG')
    _save_random(root / 'd.jpeg', (18, 18), seed=3, format='JPEG')
    _save_random(root / 'c.webp', (22, 14), seed=4, format='WEBP')
    (root / 'notes.txt').write_text('not an image')
    (root / '.DS_Store').write_bytes(b'\x00\x00\x00\x01Bud1' + b'\x00' * 32)
    (root / '._b.PNG').write_bytes(b'AppleDouble junk')  # macOS resource fork
    (root / 'x.png').mkdir()
    _save_random(root / 'x.png' / 'nested.png', (8, 8), seed=5)
    (root / 'README').write_text('no extension')
    return root


def test_only_image_files_are_listed_sorted(mixed_dir):
    names = [p.name for p in list_concept_images(mixed_dir)]
    assert names == ['a.Jpg', 'b.PNG', 'c.webp', 'd.jpeg']


def test_dataset_uses_only_the_real_images(mixed_dir):
    ds = TextualInversionDataset(str(mixed_dir), TOKEN, repeats=1, seed=0)
    assert [Path(p).name for p in ds.image_paths] == ['a.Jpg', 'b.PNG', 'c.webp', 'd.jpeg']
    assert [im.size for im in ds.images] == [(16, 20), (20, 16), (22, 14), (18, 18)]
    assert len(ds) == 4
    meta = ds.metainfo
    assert (meta['placeholder_token'], meta['images'], meta['data_root']) == (TOKEN, 4,
                                                                              str(mixed_dir))
    # Digests of the files and captions: the same for a copy elsewhere, not for other bytes.
    copy = mixed_dir.parent / 'copy'
    shutil.copytree(mixed_dir, copy)
    assert TextualInversionDataset(str(copy), TOKEN, seed=0).fingerprint == ds.fingerprint
    (copy / 'a.Jpg').write_bytes((copy / 'b.PNG').read_bytes())
    changed = TextualInversionDataset(str(copy), TOKEN, seed=0).fingerprint
    assert changed['images'] != ds.fingerprint['images']
    assert changed['captions'] == ds.fingerprint['captions']
    assert {Path(ds[i]['img_path']).name for i in range(4)} == {'a.Jpg', 'b.PNG', 'c.webp', 'd.jpeg'}


def test_image_extensions_are_lowercase_with_dot():
    assert {'.png', '.jpg', '.jpeg', '.webp'} <= IMAGE_EXTENSIONS
    assert all(e.startswith('.') and e == e.lower() for e in IMAGE_EXTENSIONS)


def test_image_order_pairs_with_index(tmp_path):
    root = tmp_path / 'colors'
    root.mkdir()
    colors = {'img2.png': (0, 0, 255), 'img0.png': (255, 0, 0), 'img1.png': (0, 255, 0)}
    for name, c in colors.items():
        Image.new('RGB', (8, 8), c).save(root / name)
    ds = TextualInversionDataset(root, TOKEN, repeats=2, seed=0)
    for i in range(6):
        sample = ds[i]
        name = Path(sample['img_path']).name
        assert name == f'img{i % 3}.png'
        assert sample['img'].getpixel((0, 0)) == colors[name]


# --------------------------------------------------------------------------- bad input


def test_missing_folder_message_names_path(tmp_path):
    missing = tmp_path / 'no-such-folder'
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        TextualInversionDataset(str(missing), TOKEN)


def test_file_instead_of_folder_is_rejected(tmp_path):
    f = tmp_path / 'image.png'
    Image.new('RGB', (8, 8)).save(f)
    with pytest.raises(NotADirectoryError, match=re.escape(str(f)) + ' is a file, not a folder'):
        TextualInversionDataset(str(f), TOKEN)


def test_empty_folder_message(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ValueError, match=re.escape(str(empty)) + '.*has no images.*found: nothing'):
        TextualInversionDataset(str(empty), TOKEN)


def test_folder_without_images_lists_what_was_found(tmp_path):
    root = tmp_path / 'docs'
    root.mkdir()
    (root / 'notes.txt').write_text('hello')
    (root / 'x.png').mkdir()
    with pytest.raises(ValueError, match=r"has no images.*\.png.*found: \['notes.txt', 'x.png'\]"):
        TextualInversionDataset(str(root), TOKEN)


def test_only_hidden_files_counts_as_empty(tmp_path):
    root = tmp_path / 'hidden'
    root.mkdir()
    (root / '.DS_Store').write_bytes(b'junk')
    with pytest.raises(ValueError, match='found: nothing'):
        TextualInversionDataset(str(root), TOKEN)


def test_unreadable_image_message_names_file(tmp_path):
    root = tmp_path / 'bad'
    root.mkdir()
    Image.new('RGB', (8, 8)).save(root / 'good.png')
    bad = root / 'broken.png'
    bad.write_bytes(b'this is definitely not a png' * 4)
    with pytest.raises(ValueError, match='Cannot read image ' + re.escape(str(bad))):
        TextualInversionDataset(str(root), TOKEN)


def test_truncated_image_message_names_file(tmp_path):
    root = tmp_path / 'trunc'
    root.mkdir()
    full = root / 'full.png'
    _save_random(full, (64, 64))
    data = full.read_bytes()
    full.unlink()
    bad = root / 'half.png'
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        TextualInversionDataset(str(root), TOKEN)


def test_template_without_placeholder(concept_dir):
    with pytest.raises(ValueError, match=r'without "\{\}".*a photo of my toy'):
        TextualInversionDataset(str(concept_dir), TOKEN, templates=['a photo of my toy'])


def test_empty_template_list(concept_dir):
    with pytest.raises(ValueError, match='No caption templates given'):
        TextualInversionDataset(str(concept_dir), TOKEN, templates=[])


def test_unknown_learnable_property(concept_dir):
    with pytest.raises(ValueError, match=r"learnable_property must be one of.*got 'objects'"):
        TextualInversionDataset(str(concept_dir), TOKEN, learnable_property='objects')


@pytest.mark.parametrize('repeats', [0, -3])
def test_repeats_must_be_positive(concept_dir, repeats):
    with pytest.raises(ValueError, match=f'repeats must be >= 1, got {repeats}'):
        TextualInversionDataset(str(concept_dir), TOKEN, repeats=repeats)


# --------------------------------------------------------------------------- decoding


def test_modes_are_converted_to_rgb(tmp_path):
    root = tmp_path / 'modes'
    root.mkdir()
    Image.new('RGBA', (10, 6), (10, 200, 30, 255)).save(root / 'a_rgba.png')
    Image.new('L', (7, 9), 77).save(root / 'b_gray.png')
    pal = Image.new('P', (5, 5), 1)
    pal.putpalette([0, 0, 0, 250, 120, 5] + [0] * (3 * 254))
    pal.save(root / 'c_pal.png')
    Image.new('RGB', (6, 6), (1, 2, 3)).save(root / 'd.bmp')
    ds = TextualInversionDataset(str(root), TOKEN, repeats=1, seed=0)
    assert [im.mode for im in ds.images] == ['RGB'] * 4
    assert [im.size for im in ds.images] == [(10, 6), (7, 9), (5, 5), (6, 6)]
    assert ds.images[0].getpixel((3, 3)) == (10, 200, 30)
    assert ds.images[1].getpixel((3, 3)) == (77, 77, 77)
    assert ds.images[2].getpixel((3, 3)) == (250, 120, 5)
    assert ds.images[3].getpixel((3, 3)) == (1, 2, 3)


def _exif_jpeg(path, orientation):
    """60x40 (w x h) blue JPEG with a 12x12 red block at its stored top-left corner."""
    arr = np.zeros((40, 60, 3), dtype=np.uint8)
    arr[:] = (0, 0, 255)
    arr[:12, :12] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr, 'RGB').save(path, exif=exif, quality=95)


def _corner_colors(img, k=8):
    a = np.asarray(img).astype(float)
    return {'top-left': a[:k, :k].mean((0, 1)), 'top-right': a[:k, -k:].mean((0, 1)),
            'bottom-left': a[-k:, :k].mean((0, 1)), 'bottom-right': a[-k:, -k:].mean((0, 1))}


# EXIF orientation -> (displayed size, corner where the stored top-left ends up)
@pytest.mark.parametrize('orientation,size,corner', [
    (1, (60, 40), 'top-left'),
    (3, (60, 40), 'bottom-right'),   # rotated 180
    (6, (40, 60), 'top-right'),      # rotate 90 clockwise to view
    (8, (40, 60), 'bottom-left'),    # rotate 90 counter-clockwise to view
])
def test_exif_orientation_is_applied(tmp_path, orientation, size, corner):
    root = tmp_path / 'exif'
    root.mkdir()
    _exif_jpeg(root / 'phone.jpg', orientation)
    assert Image.open(root / 'phone.jpg').size == (60, 40)  # stored sideways
    ds = TextualInversionDataset(str(root), TOKEN, repeats=1, seed=0, pipeline=[dict(type='PackInputs')])
    img = ds.images[0]
    assert img.size == size
    colors = _corner_colors(img)
    for name, c in colors.items():
        if name == corner:
            assert c[0] > 200 and c[2] < 60, (name, c)   # red marker
        else:
            assert c[2] > 200 and c[0] < 60, (name, c)   # blue background
    # ... and the packed tensor is upright too: [3, H, W] with the marker in place
    t = ds[0]['inputs']
    assert tuple(t.shape) == (3, size[1], size[0])
    rows = slice(0, 8) if corner.startswith('top') else slice(-8, None)
    cols = slice(0, 8) if corner.endswith('left') else slice(-8, None)
    assert t[0, rows, cols].mean() > 0.6 and t[2, rows, cols].mean() < -0.6


def test_load_rgb_applies_exif_and_returns_rgb(tmp_path):
    p = tmp_path / 'x.jpg'
    _exif_jpeg(p, 6)
    img = load_rgb(p)
    assert img.mode == 'RGB' and img.size == (40, 60)


# --------------------------------------------------------------------------- captions


def test_object_captions_use_all_27_object_templates(concept_dir):
    ds = TextualInversionDataset(str(concept_dir), TOKEN, learnable_property='object', seed=0)
    expected = {t.replace('{}', TOKEN) for t in _templates('object.txt')}
    assert len(ds.templates) == 27
    captions = Counter(ds[i]['caption'] for i in range(1500))
    assert set(captions) == expected
    # a uniform choice: no template hogs or starves (expected 1500/27 ~ 56 each)
    assert min(captions.values()) >= 25 and max(captions.values()) <= 95


def test_style_captions_use_all_19_style_templates(concept_dir):
    ds = TextualInversionDataset(str(concept_dir), TOKEN, learnable_property='style', seed=0)
    expected = {t.replace('{}', TOKEN) for t in _templates('style.txt')}
    assert len(ds.templates) == 19
    captions = {ds[i]['caption'] for i in range(1000)}
    assert captions == expected
    assert all(c.endswith(f'in the style of {TOKEN}') for c in captions)


def test_explicit_template_list(concept_dir):
    templates = ['a {} on the beach', 'a {} with {braces}', 'two {} and {}']
    ds = TextualInversionDataset(str(concept_dir), 'S*', learnable_property='style',
                                 templates=templates, seed=1)
    captions = {ds[i]['caption'] for i in range(200)}
    assert captions == {'a S* on the beach', 'a S* with {braces}', 'two S* and S*'}


def test_template_file(concept_dir, tmp_path):
    f = tmp_path / 'captions.txt'
    f.write_text('a {} in the snow\n\nan old {}\n')
    ds = TextualInversionDataset(str(concept_dir), TOKEN, templates=str(f), seed=0)
    assert ds.templates == ['a {} in the snow', 'an old {}']
    captions = {ds[i]['caption'] for i in range(100)}
    assert captions == {f'a {TOKEN} in the snow', f'an old {TOKEN}'}


def test_caption_in_packed_sample(concept_dir):
    ds = TextualInversionDataset(str(concept_dir), TOKEN, templates=['my {} here'], seed=0,
                                 pipeline=_random_pipeline())
    out = ds[5]
    assert out['captions'] == f'my {TOKEN} here'
    assert set(out) == {'inputs', 'captions', 'noise_seeds', 'latent_keys', 'time_ids', 'concepts'}
    assert out['concepts'] == TOKEN  # whose rows the sample trains (many-concept batches)


# --------------------------------------------------------------------------- determinism


def _assert_same(a, b):
    assert a['captions'] == b['captions']
    assert a['noise_seeds'] == b['noise_seeds']
    assert torch.equal(a['inputs'], b['inputs'])


def test_same_seed_same_samples_across_instances(concept_dir):
    ds1 = TextualInversionDataset(str(concept_dir), TOKEN, seed=42, pipeline=_random_pipeline())
    ds2 = TextualInversionDataset(str(concept_dir), TOKEN, seed=42, pipeline=_random_pipeline())
    indices = [0, 1, 2, 7, 299, 300, 301, 12345]
    for i in indices:
        _assert_same(ds1[i], ds2[i])
    # and in any access order (no hidden state between calls)
    for i in reversed(indices):
        _assert_same(ds1[i], ds2[i])
        _assert_same(ds1[i], ds1[i])


def test_different_seed_different_samples(concept_dir):
    ds1 = TextualInversionDataset(str(concept_dir), TOKEN, seed=42, pipeline=_random_pipeline())
    ds2 = TextualInversionDataset(str(concept_dir), TOKEN, seed=43, pipeline=_random_pipeline())
    a = [ds1[i] for i in range(12)]
    b = [ds2[i] for i in range(12)]
    assert all(x['noise_seeds'] != y['noise_seeds'] for x, y in zip(a, b))
    assert any(x['captions'] != y['captions'] for x, y in zip(a, b))
    assert any(not torch.equal(x['inputs'], y['inputs']) for x, y in zip(a, b))


def test_noise_seeds_are_distinct_ints(concept_dir):
    ds = TextualInversionDataset(str(concept_dir), TOKEN, repeats=10, seed=0)
    seeds = [ds[i]['noise_seed'] for i in range(60)]
    assert all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)
    assert len(set(seeds)) == 60


def test_seed_none_follows_torch_initial_seed(concept_dir):
    with torch.random.fork_rng():
        torch.manual_seed(2024)
        ds1 = TextualInversionDataset(str(concept_dir), TOKEN, pipeline=_random_pipeline())
        torch.manual_seed(2024)
        ds2 = TextualInversionDataset(str(concept_dir), TOKEN, pipeline=_random_pipeline())
    assert ds1.seed == ds2.seed == 2024
    _assert_same(ds1[3], ds2[3])


@pytest.mark.parametrize('n_images,repeats', [(3, 1), (3, 7), (5, 100)])
def test_len_is_images_times_repeats(tmp_path, n_images, repeats):
    root = tmp_path / 'imgs'
    root.mkdir()
    for k in range(n_images):
        Image.new('RGB', (8, 8), (k, k, k)).save(root / f'{k}.png')
    ds = TextualInversionDataset(str(root), TOKEN, repeats=repeats)
    assert len(ds) == n_images * repeats


def test_default_repeats_is_100(cat_toy):
    ds = TextualInversionDataset(str(cat_toy), TOKEN)
    assert len(ds) == 5 * 100


def test_indices_past_len_are_later_epochs(concept_dir):
    pipeline = [dict(type='ResizeShorterSide', size=32), dict(type='CenterCrop', size=32),
                dict(type='PackInputs')]
    ds = TextualInversionDataset(str(concept_dir), TOKEN, repeats=2, seed=7)
    det = TextualInversionDataset(str(concept_dir), TOKEN, repeats=2, seed=7, pipeline=pipeline)
    n = len(ds)
    assert n == 6
    captions_differ = 0
    for i in range(n):
        for epoch in (1, 2, 50):
            j = i + epoch * n
            a, b = ds[i], ds[j]
            assert b['img_path'] == a['img_path']         # same image ...
            assert b['sample_idx'] == j
            assert b['noise_seed'] != a['noise_seed']     # ... fresh random choices
            captions_differ += b['caption'] != a['caption']
            # deterministic pipeline: same pixels for the same image
            assert torch.equal(det[i]['inputs'], det[j]['inputs'])
    assert captions_differ >= 9  # 18 pairs; each differs with p = 26/27


def test_later_epochs_get_different_augmentation(concept_dir):
    ds = TextualInversionDataset(str(concept_dir), TOKEN, repeats=1, seed=3,
                                 pipeline=_random_pipeline(size=16))
    n = len(ds)
    differ = sum(not torch.equal(ds[i]['inputs'], ds[i + e * n]['inputs'])
                 for i in range(n) for e in range(1, 5))
    assert differ >= 10  # of 12 pairs; random crop of 32->16 rarely repeats


@pytest.mark.parametrize('make_index', [np.int64, np.int32, torch.tensor, int],
                         ids=['np.int64', 'np.int32', 'torch.tensor', 'int'])
def test_index_types(concept_dir, make_index):
    ds = TextualInversionDataset(str(concept_dir), TOKEN, seed=0, pipeline=_random_pipeline())
    _assert_same(ds[make_index(11)], ds[11])


def test_getitem_does_not_modify_cached_images(concept_dir):
    ds = TextualInversionDataset(str(concept_dir), TOKEN, seed=0, pipeline=[
        dict(type='RandomCrop', size=20), dict(type='RandomHorizontalFlip', prob=1.0),
        dict(type='PackInputs')])
    before = [np.asarray(im).copy() for im in ds.images]
    for i in range(12):
        ds[i]
    assert all(np.array_equal(b, np.asarray(im)) for b, im in zip(before, ds.images))
    assert [im.size for im in ds.images] == [b.shape[1::-1] for b in before]


def test_raw_sample_without_pipeline(concept_dir):
    ds = TextualInversionDataset(str(concept_dir), TOKEN, seed=0)
    s = ds[4]
    assert isinstance(s['img'], Image.Image) and s['img'].mode == 'RGB'
    assert s['sample_idx'] == 4
    assert Path(s['img_path']).name == 'b.jpg'   # 4 % 3 == 1 -> second sorted image
    assert isinstance(s['rng'], np.random.Generator)


def test_cat_toy_full_pipeline(cat_toy):
    ds = TextualInversionDataset(str(cat_toy), TOKEN, seed=0, pipeline=[
        dict(type='ResizeShorterSide', size=64), dict(type='CenterCrop', size=64),
        dict(type='RandomHorizontalFlip'), dict(type='PackInputs')])
    for i in range(5):
        t = ds[i]['inputs']
        assert t.dtype == torch.float32 and tuple(t.shape) == (3, 64, 64)
        assert -1.0 <= t.min() and t.max() <= 1.0


# --------------------------------------------------------------------------- registry


@pytest.fixture
def no_default_scope(monkeypatch):
    """Run as a bare script would: no mmengine DefaultScope (a Runner creates one)."""
    from mmengine.registry import DefaultScope
    monkeypatch.setattr(DefaultScope, '_instance_dict', OrderedDict())


def _registry_cfg(root, **kw):
    cfg = dict(type='TextualInversionDataset', data_root=str(root), placeholder_token=TOKEN,
               repeats=2, seed=0,
               pipeline=[dict(type='ResizeShorterSide', size=32), dict(type='CenterCrop', size=32),
                         dict(type='RandomHorizontalFlip'), dict(type='PackInputs')])
    cfg.update(kw)
    return cfg


def _check_built(ds):
    assert isinstance(ds, TextualInversionDataset)
    assert len(ds) == 6
    out = ds[0]
    assert tuple(out['inputs'].shape) == (3, 32, 32)
    assert out['inputs'].dtype == torch.float32
    assert TOKEN in out['captions']


def test_build_from_registry_without_default_scope(concept_dir, no_default_scope):
    # Regression: dict pipelines used to go through mmengine's root TRANSFORMS registry,
    # which only finds mmti transforms when a DefaultScope 'mmti' exists.
    _check_built(DATASETS.build(_registry_cfg(concept_dir)))


def test_build_from_registry_with_mmti_scope(concept_dir, no_default_scope):
    _check_built(DATASETS.build(_registry_cfg(concept_dir, _scope_='mmti')))


def test_build_from_registry_with_callable_pipeline(concept_dir, no_default_scope):
    from mmti.datasets.transforms import CenterCrop, PackInputs, ResizeShorterSide
    ds = DATASETS.build(_registry_cfg(
        concept_dir, pipeline=[ResizeShorterSide(32), CenterCrop(32), PackInputs()]))
    _check_built(ds)


def test_registry_knows_the_dataset():
    assert DATASETS.get('TextualInversionDataset') is TextualInversionDataset


# --------------------------------------------------------------------------- DataLoader


def _first_batches(ds, num_workers, n=3):
    from mmengine.dataset import pseudo_collate
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=num_workers,
                                         sampler=SeededInfiniteSampler(ds, seed=0),
                                         collate_fn=pseudo_collate)
    it = iter(loader)
    try:
        return [next(it) for _ in range(n)]
    finally:
        del it  # shuts the workers down


def test_dataloader_workers_give_the_same_batches(concept_dir):
    ds = TextualInversionDataset(str(concept_dir), TOKEN, repeats=2, seed=5,
                                 pipeline=_random_pipeline(size=16))
    serial = _first_batches(ds, num_workers=0)
    parallel = _first_batches(ds, num_workers=2)
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        assert a['captions'] == b['captions']
        assert a['noise_seeds'] == b['noise_seeds']
        assert len(a['inputs']) == len(b['inputs']) == 2
        assert all(torch.equal(x, y) for x, y in zip(a['inputs'], b['inputs']))
    # the batches are the sampler's order, not just 0, 1, 2, ...
    sampler_order = list(itertools.islice(iter(SeededInfiniteSampler(ds, seed=0)), 6))
    expected_seeds = [ds[i]['noise_seeds'] for i in sampler_order]
    assert [s for batch in serial for s in batch['noise_seeds']] == expected_seeds


# --------------------------------------------------------------------------- caption files


def test_caption_files_give_each_image_its_own_captions(concept_dir):
    (concept_dir / 'a.txt').write_text('a {} on a red sofa\n\na {} on a red chair\n')
    (concept_dir / 'b.txt').write_text('a {} in the snow\n')
    (concept_dir / 'c.txt').write_text('a {} at night\n')
    ds = TextualInversionDataset(str(concept_dir), TOKEN, caption_files=True, repeats=20, seed=3)
    expected = {'a.png': {f'a {TOKEN} on a red sofa', f'a {TOKEN} on a red chair'},
                'b.jpg': {f'a {TOKEN} in the snow'}, 'c.png': {f'a {TOKEN} at night'}}
    seen = {name: set() for name in expected}
    for i in range(len(ds)):
        sample = ds[i]
        seen[Path(sample['img_path']).name].add(sample['caption'])
    assert seen == expected  # both lines of a.txt drawn, nothing from the built-in list


def test_caption_file_endings_in_any_letter_case_are_found(concept_dir):
    # Images ending .PNG are found; so are captions ending .TXT (cameras and
    # Windows tools write both).
    (concept_dir / 'a.TXT').write_text('a {} on a red sofa\n')
    (concept_dir / 'b.Txt').write_text('a {} in the snow\n')
    (concept_dir / 'c.txt').write_text('a {} at night\n')
    ds = TextualInversionDataset(str(concept_dir), TOKEN, caption_files=True, repeats=1, seed=3)
    assert sorted(ds.distinct_captions()) == sorted(
        [f'a {TOKEN} on a red sofa', f'a {TOKEN} in the snow', f'a {TOKEN} at night'])


def test_caption_files_missing_file_names_the_image_and_the_fix(concept_dir):
    (concept_dir / 'a.txt').write_text('a {} on a red sofa\n')
    with pytest.raises(FileNotFoundError, match=r'b\.jpg has no caption file b\.txt.*'
                                                r'caption_files=False'):
        TextualInversionDataset(str(concept_dir), TOKEN, caption_files=True)


@pytest.mark.parametrize('text', ['', 'a photo on a sofa\n', 'a {} here\nno placeholder\n'])
def test_caption_files_without_placeholder_are_refused(concept_dir, text):
    for name in ('a', 'b', 'c'):
        (concept_dir / f'{name}.txt').write_text('a {} ok\n')
    (concept_dir / 'c.txt').write_text(text)
    with pytest.raises(ValueError, match=r'c\.txt needs one or more lines, each with "\{\}"'):
        TextualInversionDataset(str(concept_dir), TOKEN, caption_files=True)


def test_caption_files_off_ignores_txt_files(concept_dir):
    (concept_dir / 'a.txt').write_text('a {} on a red sofa\n')
    ds = TextualInversionDataset(str(concept_dir), TOKEN, templates=['x {} y'], repeats=4)
    assert {ds[i]['caption'] for i in range(len(ds))} == {f'x {TOKEN} y'}
