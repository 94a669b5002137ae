"""TextualInversion with a concept list: every concept's rows are trained, and
each concept's rows learn from its own samples only."""
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from mmti_testing import REPO_ROOT, build_tiny_model

CONCEPTS = [
    dict(placeholder_token='<a>', initializer_token='toy', num_vectors=2),
    dict(placeholder_token='<b>', initializer_token='cat'),
    dict(placeholder_token='<c>', initializer_token='dog', data_root='ignored/by/the/model'),
]


def build_many(**overrides):
    return build_tiny_model(placeholder_token=None, initializer_token=None, concepts=CONCEPTS,
                            **overrides)


@pytest.fixture(scope='module')
def model():
    return build_many()


def rows(model, token):
    return model.token_embedding.concept_rows(token)


def batch(captions_and_concepts, seed=0):
    """Images, captions, noise seeds and concepts of a small mixed batch."""
    captions, concepts = zip(*captions_and_concepts)
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(len(captions), 3, 32, 32, generator=generator) * 2 - 1
    noise_seeds = [1000 + seed * 10 + i for i in range(len(captions))]
    return images, list(captions), noise_seeds, list(concepts)


MIXED = [('a <a> on a sofa', '<a>'), ('a photo of <b>', '<b>'), ('a small <a>', '<a>'),
         ('a <b> toy', '<b>'), ('<b> in the snow', '<b>')]


def test_every_concept_is_added_trainable_from_its_own_start(model):
    tiny = build_tiny_model()  # the same tiny SD, one concept
    assert model.placeholder_tokens == ['<a>', '<b>', '<c>']
    assert model.placeholder_token == '<a>'  # the first, where one name is needed
    assert model.concepts == ['<a>', '<b>', '<c>']
    assert model.token_embedding.trainable_concepts() == ['<a>', '<b>', '<c>']
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 3
    assert all(any(p is rows(model, t) for p in trainable) for t in model.placeholder_tokens)
    assert rows(model, '<a>').shape == (2, 32) and rows(model, '<b>').shape == (1, 32)
    base = tiny.token_embedding.base.weight
    for token, word in [('<a>', 'toy'), ('<b>', 'cat'), ('<c>', 'dog')]:
        word_id = tiny.tokenizer.convert_tokens_to_ids(word + '</w>')
        assert torch.equal(rows(model, token).detach(), base[word_id].expand_as(rows(model, token)))
    # The checkpoint holds the three concepts' rows and nothing else.
    assert list(model.state_dict()) == [f'token_embedding.rows.{i}' for i in range(3)]
    first = model.token_embedding.first_new_id  # the tokenizer's length before any concept
    assert model.trainable_token_ids() == list(range(first, first + 4))
    assert len(model.tokenizer) == first + 4


def test_validation_prompts_are_rendered_for_every_concept():
    model = build_many(validation_prompts=['a {}', 'a {} bag'])
    assert model.validation_templates == ['a {}', 'a {} bag']
    assert model.validation_prompts == ['a <a>', 'a <a> bag', 'a <b>', 'a <b> bag',
                                        'a <c>', 'a <c> bag']


@pytest.mark.parametrize('extra', [dict(placeholder_token='<x>'), dict(initializer_token='toy'),
                                   dict(num_vectors=2), dict(initial_embedding='x.safetensors')])
def test_concepts_with_single_concept_keys_is_refused(extra):
    key = next(iter(extra))
    with pytest.raises(ValueError, match=f'model has both concepts=\\[...\\] and {key}; with a '
                                         f'concept list each concept sets its own {key}'):
        build_tiny_model(**{'placeholder_token': None, 'initializer_token': None,
                            'concepts': CONCEPTS, **extra})


def test_concept_list_mistakes_name_the_model_field():
    with pytest.raises(ValueError, match=r"model\.concepts\[1\] and model\.concepts\[0\] both use "
                                         r"placeholder_token '<a>'"):
        build_tiny_model(placeholder_token=None, initializer_token=None,
                         concepts=[CONCEPTS[0], CONCEPTS[0]])
    with pytest.raises(ValueError, match='Set initializer_token for <b>'):
        build_tiny_model(placeholder_token=None, initializer_token=None,
                         concepts=[CONCEPTS[0], dict(placeholder_token='<b>')])


def test_loss_is_the_sum_of_each_concepts_mean_on_its_own_samples(model):
    images, captions, seeds, concepts = batch(MIXED)
    model.zero_grad(set_to_none=True)
    mixed = model.loss(images, captions, seeds, concepts=concepts)['loss']
    mixed.backward()
    mixed_grads = {t: rows(model, t).grad.clone() for t in ('<a>', '<b>')}
    assert rows(model, '<c>').grad is None

    separate, own_grads = 0.0, {}
    for token in ('<a>', '<b>'):
        index = [i for i, c in enumerate(concepts) if c == token]
        model.zero_grad(set_to_none=True)
        own = model.loss(images[index], [captions[i] for i in index],
                         [seeds[i] for i in index])['loss']
        own.backward()
        own_grads[token] = rows(model, token).grad.clone()
        other = '<b>' if token == '<a>' else '<a>'
        assert rows(model, other).grad is None  # the other concept is absent from this batch
        separate = separate + own.detach()
    model.zero_grad(set_to_none=True)
    assert torch.allclose(mixed.detach(), separate, rtol=1e-5, atol=0)
    # Not the plain mean over the batch (2 and 3 samples: the groups weigh alike).
    with torch.no_grad():
        plain = model.loss(images, captions, seeds)['loss']
    assert not torch.allclose(plain, separate, rtol=1e-2)
    for token in ('<a>', '<b>'):
        assert torch.allclose(mixed_grads[token], own_grads[token], rtol=1e-4, atol=1e-9), token


def test_one_concept_per_batch_is_the_plain_mean(model):
    images, captions, seeds, concepts = batch([(c, '<b>') for c in ('a <b>', 'a <b> toy', '<b>')])
    with torch.no_grad():
        labelled = model.loss(images, captions, seeds, concepts=concepts)['loss']
        unlabelled = model.loss(images, captions, seeds)['loss']
    assert torch.equal(labelled, unlabelled)


def test_a_concept_absent_from_the_batch_is_left_exactly_as_it_is():
    model = build_many()
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'textual_inversion_toy_concepts.py'))
    with DefaultScope.overwrite_default_scope('mmti'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)  # AdamW over the rows
    everyone = MIXED[:2] + [('a <c> here', '<c>')]
    images, captions, seeds, concepts = batch(everyone, seed=1)
    wrapper.update_params(model.loss(images, captions, seeds, concepts=concepts)['loss'])
    assert all(len(wrapper.optimizer.state[rows(model, t)]) for t in ('<a>', '<b>', '<c>'))

    # <c> now has Adam momentum: a zero gradient would still move it, no gradient must not.
    before = {t: rows(model, t).detach().clone() for t in ('<a>', '<b>', '<c>')}
    images, captions, seeds, concepts = batch(MIXED, seed=2)
    loss = model.loss(images, captions, seeds, concepts=concepts)['loss']
    wrapper.backward(loss)
    assert rows(model, '<c>').grad is None
    assert rows(model, '<a>').grad is not None and rows(model, '<b>').grad is not None
    wrapper.step()
    wrapper.zero_grad()
    assert torch.equal(rows(model, '<c>').detach(), before['<c>'])
    assert not torch.equal(rows(model, '<a>').detach(), before['<a>'])
    assert not torch.equal(rows(model, '<b>').detach(), before['<b>'])


def test_training_captions_must_train_every_concept(model):
    good = ['a <a> on a sofa', 'a <b>', 'a <c> toy']
    model.check_training_captions(good)
    with pytest.raises(ValueError, match=r"No train_dataloader\.dataset caption contains '<c>'; "
                                         r'its rows would never be trained'):
        model.check_training_captions(good[:2])
    # '<a>_1' is <a>'s second vector: a caption with it but not '<a>' leaves a row untrained.
    with pytest.raises(ValueError, match=r"caption 'a <a>_1 thing' does not contain the "
                                         r"trainable placeholder '<a>'"):
        model.check_training_captions(good + ['a <a>_1 thing'])
    with pytest.raises(ValueError, match="caption 'a plain sofa' does not contain the trainable"):
        model.check_training_captions(good + ['a plain sofa'])


def test_grids_of_several_concepts_render_in_one_batch_as_if_alone(model):
    import numpy as np
    saved = model.validation_cfg
    model.validation_cfg = dict(num_inference_steps=3, seed=5, num_images_per_prompt=2,
                                show_progress=False)
    try:
        groups = [['a <a> bag', 'a small <a>'], ['a photo of <b>'], [], ['<c> in the snow']]
        together = model.val_step_groups(groups)
        alone = [model.val_step({'prompts': g}) if g else [] for g in groups]
        model.validation_cfg = dict(model.validation_cfg, seed=6)
        reseeded = model.val_step({'prompts': groups[1]})
    finally:
        model.validation_cfg = saved
    assert [[r['prompt'] for r in g] for g in together] == [[r['prompt'] for r in g] for g in alone]
    assert [len(g) for g in together] == [4, 2, 0, 2]

    def pixels(results):
        return np.stack([np.asarray(r['sample'], dtype=np.float64) for r in results])
    for mine, own in zip(together, alone):
        if own:  # the same starting noise as alone: equal but for the batch's rounding
            assert np.abs(pixels(mine) - pixels(own)).max() <= 2
    assert np.abs(pixels(together[1]) - pixels(reseeded)).mean() > 10  # noise matters


def test_one_group_is_exactly_val_step(model):
    import numpy as np
    saved = model.validation_cfg
    model.validation_cfg = dict(num_inference_steps=2, seed=3, show_progress=False)
    try:
        prompts = ['a <a> bag', 'a photo of <b>']
        (group,) = model.val_step_groups([prompts])
        alone = model.val_step({'prompts': prompts})
    finally:
        model.validation_cfg = saved
    assert all(np.array_equal(np.asarray(g['sample']), np.asarray(a['sample']))
               for g, a in zip(group, alone))
