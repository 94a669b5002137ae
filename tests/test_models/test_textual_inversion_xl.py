"""SDXL: both encoders learn, files travel to diffusers' SDXL pipeline, odd batch sizes work."""
import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from mmti_testing import REPO_ROOT
from safetensors.torch import load_file

import mmti.models  # noqa: F401
from mmti.engine import TrainableParamsOptimWrapperConstructor
from mmti.registry import MODELS
from mmengine.optim import build_optim_wrapper

TINY_SDXL = REPO_ROOT / 'data' / 'tiny-sdxl'


def build(**overrides):
    cfg = dict(type='TextualInversionXL', pretrained_model=str(TINY_SDXL),
               placeholder_token='<cat-toy>', initializer_token='toy')
    cfg.update(overrides)
    return MODELS.build(cfg)


def batch(size: int) -> dict:
    generator = torch.Generator().manual_seed(size)
    return {'inputs': list(torch.rand(size, 3, 64, 64, generator=generator) * 2 - 1),
            'captions': ['a photo of a <cat-toy>'] * size,
            'noise_seeds': list(range(size)),
            'time_ids': [torch.tensor([96., 80., 8., 16., 64., 64.])] * size}


def frozen(model) -> dict:
    return {f'{n}.{k}': v.clone() for n in model.FROZEN
            for k, v in getattr(model, n).state_dict().items() if '.rows.' not in k}


def test_only_the_new_rows_of_both_encoders_change():
    model = build(num_vectors=2)
    before = frozen(model)
    rows = [model.token_embedding.concept_rows('<cat-toy>').detach().clone(),
            model.token_embedding_2.concept_rows('<cat-toy>').detach().clone()]
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor=TrainableParamsOptimWrapperConstructor,
        optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.0)))
    params = [p for g in wrapper.optimizer.param_groups for p in g['params']]
    assert len(params) == 2 and {p.shape[1] for p in params} == {32, 64}
    for size in (3, 2):  # a short last batch is fine: time ids are per sample
        model.train_step(batch(size), wrapper)
    after = frozen(model)
    assert [k for k in before if not torch.equal(before[k], after[k])] == []
    assert not torch.equal(rows[0], model.token_embedding.concept_rows('<cat-toy>'))
    assert not torch.equal(rows[1], model.token_embedding_2.concept_rows('<cat-toy>'))
    assert list(model.state_dict()) == ['token_embedding.rows.0', 'token_embedding_2.rows.0']


def test_time_ids_reach_the_unet():
    model = build()
    data = batch(2)
    images = torch.stack(data['inputs'])
    with torch.no_grad():
        a = model.loss(images, data['captions'], data['noise_seeds'], None, torch.stack(data['time_ids']))
        other = torch.tensor([[1024., 1024., 0., 0., 64., 64.]] * 2)
        b = model.loss(images, data['captions'], data['noise_seeds'], None, other)
    assert not torch.isclose(a['loss'], b['loss'])


def test_saved_clip_l_clip_g_file_loads_into_diffusers_sdxl(tmp_path):
    model = build(num_vectors=2)
    with torch.no_grad():
        model.token_embedding.concept_rows('<cat-toy>').normal_(generator=torch.Generator().manual_seed(1))
        model.token_embedding_2.concept_rows('<cat-toy>').normal_(generator=torch.Generator().manual_seed(2))
    path = model.save_embeddings(str(tmp_path / 'cat-toy.safetensors'), step=5)
    state = load_file(path)
    assert sorted(state) == ['clip_g', 'clip_l']
    assert state['clip_l'].shape == (2, 32) and state['clip_g'].shape == (2, 64)

    pipe = StableDiffusionXLPipeline.from_pretrained(str(TINY_SDXL))
    pipe.load_textual_inversion(state['clip_l'], token='<cat-toy>', text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(state['clip_g'], token='<cat-toy>', text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    prompt = 'a <cat-toy> on the beach'
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(prompt, device='cpu', num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        ours, ours_pooled = model.encode_prompt_xl([prompt])
    assert torch.allclose(embeds, ours, atol=1e-5) and torch.allclose(pooled, ours_pooled, atol=1e-5)

    fresh = build(num_vectors=2)
    assert fresh.load_embeddings(path) == ['<cat-toy>']
    assert torch.equal(fresh.token_embedding_2.concept_rows('<cat-toy>'), state['clip_g'])


def test_diffusers_pair_round_trip_and_unload(tmp_path):
    model = build()
    # A1111's and kohya's one-encoder layouts would drop clip_g: refused, nothing written.
    for name, fmt in (('cat.pt', None), ('cat.safetensors', 'safetensors')):
        with pytest.raises(ValueError, match=rf'{name}: the \w+ layout holds one text encoder, '
                                             r"so the clip_g rows would be lost; .*format='sdxl'"):
            model.save_embeddings(str(tmp_path / name), format=fmt)
    assert list(tmp_path.iterdir()) == []
    model.save_embeddings(str(tmp_path / 'learned_embeds.safetensors'), format='diffusers')
    assert (tmp_path / 'learned_embeds_2.safetensors').is_file()
    other = build(placeholder_token='<other>')
    # Its second file alone is named as what it is, not as a file for another model.
    with pytest.raises(ValueError, match=r'learned_embeds_2.safetensors is the clip_g half of the '
                                         r'SDXL embedding learned_embeds.safetensors \+ '
                                         r'learned_embeds_2.safetensors; load .*learned_embeds\.'):
        other.load_embeddings(str(tmp_path / 'learned_embeds_2.safetensors'))
    with pytest.raises(ValueError, match='is the clip_g half'):  # a new name changes nothing
        other.load_embeddings(str(tmp_path / 'learned_embeds_2.safetensors'), token='<zz>')
    assert other.concepts == ['<other>']
    assert other.load_embeddings(str(tmp_path / 'learned_embeds.safetensors')) == ['<cat-toy>']
    assert torch.equal(other.token_embedding_2.concept_rows('<cat-toy>'),
                       model.token_embedding_2.concept_rows('<cat-toy>'))
    table = [other.token_embedding.full_table().clone(), other.token_embedding_2.full_table().clone()]
    other.load_embeddings({'<x>': (torch.zeros(1, 32), torch.zeros(1, 64))})
    other.unload_embeddings(['<x>'])
    assert torch.equal(other.token_embedding.full_table(), table[0])
    assert torch.equal(other.token_embedding_2.full_table(), table[1])
    assert len(other.tokenizer) == len(other.tokenizer_2) == 49410


def test_sdxl_sampling_is_seeded():
    model = build()
    a = model.infer('a <cat-toy>', num_inference_steps=2, seed=3, show_progress=False)['samples'][0]
    b = model.infer('a <cat-toy>', num_inference_steps=2, seed=3, show_progress=False)['samples'][0]
    assert a.size == (64, 64) and np.array_equal(np.asarray(a), np.asarray(b))


def test_sdxl_grids_in_one_batch_start_from_each_groups_own_noise():
    model = build(validation_cfg=dict(num_inference_steps=2, seed=4, show_progress=False))
    groups = [['a <cat-toy>'], ['a <cat-toy> bag', 'a small <cat-toy>']]
    together = model.val_step_groups(groups)
    for group, results in zip(groups, together):
        alone = model.val_step({'prompts': group})
        assert [r['prompt'] for r in results] == group
        assert max(np.abs(np.asarray(r['sample'], dtype=np.int16)
                          - np.asarray(a['sample'], dtype=np.int16)).max()
                   for r, a in zip(results, alone)) <= 2
