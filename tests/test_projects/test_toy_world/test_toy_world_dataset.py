"""ToyWorldDataset: PackInputs-shaped items, determinism, held-out exclusion, caption dropout."""
import math

import pytest
import torch
from mmengine.dataset import pseudo_collate

from projects.toy_world.datasets.toy_world_dataset import ToyWorldDataset
from mmti.models.data_preprocessor import TextualInversionDataPreprocessor
from mmti.registry import DATASETS
from projects.toy_world.world import (COLOURS, HELD_OUT_CONCEPTS, PATTERNS, SHAPES, caption, is_held_out,
                            scene_for_index)

OBJECT_WORDS = {*SHAPES, *COLOURS, *PATTERNS}
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


def test_groups_of_near_twins_for_hard_negatives():
    ds = ToyWorldDataset(length=64, size=8, caption_dropout=0.0, group_size=4)
    for group in range(4):
        captions = [ds[4 * group + m]['captions'] for m in range(4)]
        assert len(set(captions)) == 4  # a well-posed contrastive batch
        first, *rest = [c.split() for c in captions]
        # Same size, position and background (the caption's tail); one object word differs.
        assert all(r[-5:] == first[-5:] and r[1] == first[1] for r in rest)
    # Groups differ from each other, each index is reproducible, and the
    # default (group_size 1) keeps the independent scenes of scene_for_index.
    assert ds[0]['captions'] != ds[4]['captions']
    assert ds[6]['captions'] == ToyWorldDataset(length=64, size=8, group_size=4)[6]['captions']
    assert ToyWorldDataset(length=8, seed=5, size=8, caption_dropout=0.0)[2]['captions'] == caption(
        scene_for_index(5, 2, tuple(HELD_OUT_CONCEPTS.values())))


def test_omit_context_leaves_setting_words_out_at_the_given_rate():
    n = 300
    full = ToyWorldDataset(length=n, size=8, caption_dropout=0.0)
    short = ToyWorldDataset(length=n, size=8, caption_dropout=0.0, omit_context=0.5)
    backgrounds = sum('background' in short[i]['captions'] for i in range(n))
    assert abs(backgrounds - n / 2) < 4.5 * math.sqrt(n / 4)
    for i in range(20):
        # Same scene and noise; the caption is the full one with words left out.
        assert full[i]['noise_seeds'] == short[i]['noise_seeds']
        assert torch.equal(full[i]['inputs'], short[i]['inputs'])
        assert set(short[i]['captions'].split()) - {'an'} <= set(full[i]['captions'].split())
    assert all(len(ToyWorldDataset(length=5, size=8, caption_dropout=0.0, omit_context=1.0)[i][
        'captions'].split()) <= 4 for i in range(5))  # "an orange striped triangle"


def test_omit_look_leaves_colour_and_pattern_unsaid():
    n = 300
    full = ToyWorldDataset(length=n, size=8, caption_dropout=0.0)
    short = ToyWorldDataset(length=n, size=8, caption_dropout=0.0, omit_look=0.5)
    colourless = 0
    for i in range(n):
        a, b = full[i]['captions'], short[i]['captions']
        assert a.split(' on a ')[-1] == b.split(' on a ')[-1]  # the setting is all said
        said = set(b.split(' on a ')[0].split())
        colourless += not said & set(COLOURS)
        assert said & set(SHAPES)  # the shape always is
    assert abs(colourless - n / 2) < 4.5 * math.sqrt(n / 4)
    assert torch.equal(full[7]['inputs'], short[7]['inputs'])
    assert full[7]['noise_seeds'] == short[7]['noise_seeds']


def test_omit_object_gives_the_edit_prompt_form_once_per_group():
    ds = ToyWorldDataset(length=400, size=8, caption_dropout=0.0, omit_object=0.5, group_size=4)
    full = ToyWorldDataset(length=400, size=8, caption_dropout=0.0, group_size=4)
    objectless = [i for i in range(400) if ds[i]['captions'] != full[i]['captions']]
    assert all(i % 4 == 0 for i in objectless)  # near-twins would share the caption
    assert abs(len(objectless) - 50) < 4.5 * math.sqrt(100 * 0.25)
    for i in objectless[:10]:
        head, setting = full[i]['captions'].split(' background')[0].rsplit(' on a ', 1)
        # The full caption minus colour, pattern and shape; the setting all said
        # (a background may be "blue", like a shape).
        kept = [w for w in head.split() if w not in OBJECT_WORDS]
        assert ds[i]['captions'] == ' '.join(kept) + f' on a {setting} background'
        assert len(kept) == len(head.split()) - len(set(head.split()) & OBJECT_WORDS) >= 4


@pytest.mark.parametrize('kwargs', [dict(length=0), dict(length=2, caption_dropout=1.5),
                                    dict(length=2, size=4), dict(length=2, seed=-1),
                                    dict(length=2, group_size=0), dict(length=2, vary=('mood',)),
                                    dict(length=2, omit_context=-0.1),
                                    dict(length=2, omit_object=2.0), dict(length=2, omit_look=-1)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ToyWorldDataset(**kwargs)
