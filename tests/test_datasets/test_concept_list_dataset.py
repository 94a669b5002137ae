"""ConceptListDataset: each concept's samples are exactly those of its own
TextualInversionDataset, whatever else is in the list."""
import pytest
import torch

import mmti.datasets  # noqa: F401  (registers the dataset and transforms)
from mmti.datasets import ConceptListDataset, TextualInversionDataset
from mmti.datasets.concept_specs import concept_seed
from mmti.registry import DATASETS
from mmti_testing import REPO_ROOT

NAMES = ('purple-dotted-star', 'orange-striped-triangle', 'green-dotted-cross')
SHARED = dict(caption_files=True, resolution=32, flip_prob=0.5, repeats=2)


def toy(name: str, **extra) -> dict:
    return dict(placeholder_token=f'<{name}>', initializer_token='star',
                data_root=str(REPO_ROOT / 'data' / 'toy_concepts' / name / 'train'), **extra)


def assert_same_sample(ours: dict, theirs: dict) -> None:
    assert ours['captions'] == theirs['captions']
    assert ours['noise_seeds'] == theirs['noise_seeds']
    assert ours['latent_keys'] == theirs['latent_keys']
    assert torch.equal(ours['inputs'], theirs['inputs'])


def test_a_sample_is_its_concepts_own_dataset_sample():
    base = 11
    listed = ConceptListDataset([toy(n) for n in NAMES], seed=base, **SHARED)
    assert listed.tokens == [f'<{n}>' for n in NAMES]
    for position, name in enumerate(NAMES):
        token = f'<{name}>'
        alone = TextualInversionDataset(data_root=toy(name)['data_root'], placeholder_token=token,
                                        seed=concept_seed(base, token), **SHARED)
        # Indices past one epoch are later epochs (fresh captions, flips, noise).
        for index in [0, 3, 7, len(alone) + 2, 5 * len(alone) + 1]:
            sample = listed[position, index]
            assert sample['concepts'] == token
            assert token in sample['captions']
            assert_same_sample(sample, alone[index])
    # The noise seed is the concept's, not one shared by every concept.
    assert listed[0, 0]['noise_seeds'] != listed[1, 0]['noise_seeds']


def test_a_concepts_samples_do_not_depend_on_the_rest_of_the_list():
    star, triangle, cross = (toy(n) for n in NAMES)
    alone = ConceptListDataset([star], seed=3, **SHARED)
    last = ConceptListDataset([cross, triangle, star], seed=3, **SHARED)
    middle = ConceptListDataset([triangle, star], seed=3, **SHARED)
    for index in range(0, 2 * len(alone.datasets[0]), 3):
        assert_same_sample(last[2, index], alone[0, index])
        assert_same_sample(middle[1, index], alone[0, index])
    # ... but it does depend on the run seed.
    other_run = ConceptListDataset([star], seed=4, **SHARED)
    assert [other_run[0, i]['noise_seeds'] for i in range(4)] != [
        alone[0, i]['noise_seeds'] for i in range(4)]


def test_seed_none_takes_the_runners_torch_seed():
    torch.manual_seed(5)
    implicit = ConceptListDataset([toy(NAMES[0])], **SHARED)
    explicit = ConceptListDataset([toy(NAMES[0])], seed=5, **SHARED)
    assert_same_sample(implicit[0, 4], explicit[0, 4])


def test_per_concept_settings_override_the_shared_ones():
    listed = ConceptListDataset([toy(NAMES[0]), toy(NAMES[1], caption_files=False,
                                                   learnable_property='style')],
                                seed=0, **SHARED)
    first, second = listed.datasets
    assert first.caption_files and not second.caption_files
    assert second.templates != first.templates  # the built-in style templates
    assert set(listed.distinct_captions()) == set(first.distinct_captions()) | set(
        second.distinct_captions())
    meta = listed.metainfo
    assert meta['placeholder_tokens'] == ['<purple-dotted-star>', '<orange-striped-triangle>']
    assert meta['images'] == [5, 5]
    assert meta['concepts'] == {d.placeholder_token: d.metainfo for d in listed.datasets}
    assert len(listed) == len(first) + len(second)


@pytest.mark.parametrize('index', [0, 3, (0,), (0, 1, 2), 'a'])
def test_a_plain_index_is_refused_naming_the_batch_sampler(index):
    listed = ConceptListDataset([toy(NAMES[0])], seed=0, **SHARED)
    with pytest.raises(IndexError, match=r"indexed by \(concept, index\).*"
                                         r"batch_sampler=dict\(type='ConceptBatchSampler'\)"):
        listed[index]


def test_missing_data_root_is_refused_naming_the_concept():
    entry = toy(NAMES[1])
    del entry['data_root']
    with pytest.raises(ValueError, match=r"concepts\[1\] \(<orange-striped-triangle>\) needs "
                                         r"data_root, the folder of its images"):
        ConceptListDataset([toy(NAMES[0]), entry], seed=0, **SHARED)


@pytest.mark.parametrize('key', ['placeholder_token', 'data_root'])
def test_per_concept_keys_given_for_all_are_refused(key):
    with pytest.raises(ValueError, match=f'ConceptListDataset takes {key} per concept'):
        DATASETS.build(dict(type='ConceptListDataset', concepts=[toy(NAMES[0])],
                            **{key: 'x'}, **SHARED))


def test_list_mistakes_name_the_dataset_field():
    with pytest.raises(ValueError, match=r"train_dataloader\.dataset\.concepts\[1\] has unknown "
                                         r"key 'data_dir'"):
        ConceptListDataset([toy(NAMES[0]), dict(placeholder_token='<b>', data_dir='x')], seed=0)
