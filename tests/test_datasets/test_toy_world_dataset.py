"""ToyWorldDataset: PackInputs-shaped items, determinism, held-out exclusion, caption dropout."""
import math

import pytest
import torch
from mmengine.dataset import pseudo_collate

from mmti.datasets.toy_world_dataset import ToyWorldDataset
from mmti.models.data_preprocessor import TextualInversionDataPreprocessor
from mmti.registry import DATASETS
from mmti.toy_world import HELD_OUT_CONCEPTS, caption, is_held_out, scene_for_index

KEYS = {'inputs', 'captions', 'noise_seeds', 'latent_keys', 'time_ids'}


def test_item_matches_pack_inputs():
    ds = ToyWorldDataset(length=4, size=32, caption_dropout=0.0)
    item = ds[0]
    assert set(item) == KEYS
    assert item['inputs'].dtype == torch.float32 and item['inputs'].shape == (3, 32, 32)
    assert -1.0 <= item['inputs'].min() and item['inputs'].max() <= 1.0
    assert item['inputs'].max() - item['inputs'].min() > 0.5  # a shape, not a flat image
    assert isinstance(item['captions'], str) and item['captions']
    assert isinstance(item['noise_seeds'], int) and 0 <= item['noise_seeds'] < 2**63
    assert item['latent_keys'] is None
    assert item['time_ids'].tolist() == [32, 32, 0, 0, 32, 32]
    assert item['time_ids'].dtype == torch.float32


def test_scene_and_caption_agree_with_scene_for_index():
    ds = ToyWorldDataset(length=10, seed=5, caption_dropout=0.0)
    exclude = tuple(HELD_OUT_CONCEPTS.values())
    for i in range(5):
        assert ds[i]['captions'] == caption(scene_for_index(5, i, exclude))


def test_deterministic_per_seed_and_index():
    a, b = ToyWorldDataset(length=8, seed=1), ToyWorldDataset(length=8, seed=1)
    for i in (0, 7, 123):  # indices past length are later epochs
        x, y = a[i], b[i]
        assert torch.equal(x['inputs'], y['inputs']) and x['captions'] == y['captions']
        assert x['noise_seeds'] == y['noise_seeds']
    other = ToyWorldDataset(length=8, seed=2)
    assert [a[i]['noise_seeds'] for i in range(4)] != [other[i]['noise_seeds'] for i in range(4)]
    with pytest.raises(IndexError):
        a[-1]


def test_held_out_excluded_by_default():
    words = [' '.join(HELD_OUT_CONCEPTS[n][k] for k in ('colour', 'pattern', 'shape'))
             for n in HELD_OUT_CONCEPTS]
    ds = ToyWorldDataset(length=600, caption_dropout=0.0)
    # Captions only (no rendering), so the check is fast.
    exclude = tuple(HELD_OUT_CONCEPTS.values())
    captions = [caption(scene_for_index(ds.seed, i, exclude)) for i in range(600)]
    assert not any(w in c for w in words for c in captions)
    assert not any(w in ds[i]['captions'] for w in words for i in range(20))
    unfiltered = ToyWorldDataset(length=600, exclude_held_out=False)
    assert unfiltered.exclude == ()
    assert any(is_held_out(scene_for_index(0, i)) for i in range(600))


def test_caption_dropout_rate():
    p, n = 0.3, 400
    ds = ToyWorldDataset(length=n, size=8, caption_dropout=p)
    empty = sum(ds[i]['captions'] == '' for i in range(n))
    # Within 4.5 standard deviations of the binomial mean: fails by chance ~1e-5.
    assert abs(empty - n * p) < 4.5 * math.sqrt(n * p * (1 - p))
    assert all(ToyWorldDataset(length=5, size=8, caption_dropout=1.0)[i]['captions'] == ''
               for i in range(5))
    # The dropout rate does not change which noise seed or image an index gets.
    keep = ToyWorldDataset(length=n, size=8, caption_dropout=0.0)
    assert keep[3]['noise_seeds'] == ds[3]['noise_seeds']
    assert torch.equal(keep[3]['inputs'], ds[3]['inputs'])


def test_registry_collate_and_preprocessor():
    ds = DATASETS.build(dict(type='ToyWorldDataset', length=3, seed=0, size=16))
    assert isinstance(ds, ToyWorldDataset) and len(ds) == 3
    batch = TextualInversionDataPreprocessor()(pseudo_collate([ds[0], ds[1]]))
    assert batch['inputs'].shape == (2, 3, 16, 16)
    assert batch['time_ids'].shape == (2, 6)
    assert len(batch['captions']) == 2 and len(batch['noise_seeds']) == 2


@pytest.mark.parametrize('kwargs', [dict(length=0), dict(length=2, caption_dropout=1.5),
                                    dict(length=2, size=4), dict(length=2, seed=-1)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ToyWorldDataset(**kwargs)
