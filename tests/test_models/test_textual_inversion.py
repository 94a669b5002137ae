"""TextualInversion on the bundled tiny SD 1.5: what trains, what is saved, what samples."""
import random

import numpy as np
import pytest
import torch
from mmti_testing import TINY_SD, build_tiny_model, unet_timesteps_seen
from diffusers import StableDiffusionPipeline
from mmengine.optim import build_optim_wrapper
from safetensors.torch import load_file

from mmti.datasets import TextualInversionDataset

PIPELINE = [dict(type='ResizeShorterSide', size=64), dict(type='CenterCrop', size=64),
            dict(type='RandomHorizontalFlip'), dict(type='PackInputs')]


def fixed_batch(size: int = 4, seed: int = 0) -> dict:
    dataset = TextualInversionDataset(str(TINY_SD.parent / 'cat_toy'), '<cat-toy>',
                                      repeats=1, seed=seed, pipeline=PIPELINE)
    samples = [dataset[i] for i in range(size)]
    return {'inputs': [s['inputs'] for s in samples],
            'captions': [s['captions'] for s in samples],
            'noise_seeds': [s['noise_seeds'] for s in samples]}


def optim_wrapper(model, lr: float = 5e-3):
    from mmti.engine import TrainableParamsOptimWrapperConstructor
    return build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor=TrainableParamsOptimWrapperConstructor,
        optimizer=dict(type='AdamW', lr=lr, weight_decay=0.0)))


def frozen_snapshot(model) -> dict[str, torch.Tensor]:
    """Every weight of the pretrained parts, including the original token table."""
    state = {}
    for name in ('unet', 'vae', 'text_encoder'):
        for key, value in getattr(model, name).state_dict().items():
            if '.rows.' not in key:
                state[f'{name}.{key}'] = value.clone()
    return state


def test_only_placeholder_rows_change():
    model = build_tiny_model()
    before = frozen_snapshot(model)
    rows_before = model.token_embedding.concept_rows('<cat-toy>').detach().clone()
    wrapper = optim_wrapper(model)
    batch = fixed_batch()
    for _ in range(3):
        model.train_step(batch, wrapper)

    after = frozen_snapshot(model)
    assert before.keys() == after.keys() and len(before) > 100
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    rows_after = model.token_embedding.concept_rows('<cat-toy>').detach()
    assert not torch.equal(rows_before, rows_after)
    # The full table the text encoder sees: old rows identical, new row moved.
    table = model.token_embedding.full_table()
    assert table.shape[0] == len(model.tokenizer) == 49409
    assert torch.equal(table[:49408], before['text_encoder.embeddings.token_embedding.base.weight'])
    # The optimizer holds only the trainable rows.
    params = [p for group in wrapper.optimizer.param_groups for p in group['params']]
    assert len(params) == 1 and params[0] is model.token_embedding.concept_rows('<cat-toy>')


def test_rows_initialised_from_initializer_token():
    model = build_tiny_model(num_vectors=3)
    toy_id = model.tokenizer.convert_tokens_to_ids('toy</w>')
    rows = model.token_embedding.concept_rows('<cat-toy>')
    base = model.token_embedding.base.weight[toy_id]
    assert rows.shape == (3, 32)
    assert all(torch.equal(row, base) for row in rows)


def test_multi_vector_expands_trains_and_saves(tmp_path):
    model = build_tiny_model(num_vectors=3)
    first = model.token_embedding.first_new_id
    ids = model.tokenize(['a <cat-toy> bag'])[0].tolist()
    assert ids[:6] == [49406, 320, first, first + 1, first + 2,
                       model.tokenizer.encode('bag', add_special_tokens=False)[0]]
    assert model.tokenizer.convert_ids_to_tokens([first + 1, first + 2]) == ['<cat-toy>_1',
                                                                             '<cat-toy>_2']
    before = model.token_embedding.concept_rows('<cat-toy>').detach().clone()
    wrapper = optim_wrapper(model)
    batch = fixed_batch()
    for _ in range(2):
        model.train_step(batch, wrapper)
    after = model.token_embedding.concept_rows('<cat-toy>').detach()
    assert all(not torch.equal(before[i], after[i]) for i in range(3))

    path = model.save_embeddings(str(tmp_path / 'learned_embeds.safetensors'), step=2)
    saved = load_file(path)
    assert list(saved) == ['<cat-toy>'] and saved['<cat-toy>'].shape == (3, 32)
    assert torch.equal(saved['<cat-toy>'], after)


def test_loss_drops_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_tiny_model()
    wrapper = optim_wrapper(model, lr=5e-3)
    batch = fixed_batch()  # fixed noise seeds: the same noise and timesteps every step
    losses = [model.train_step(batch, wrapper)['loss'].item() for _ in range(50)]
    # The tiny model has random weights, so text can explain only a little of
    # the noise; still the descent must be real and steady.
    assert losses[-1] < losses[0] * 0.997
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 40


def test_gradient_matches_finite_difference():
    """The only gradient path, placeholder rows -> loss, is the right one."""
    model = build_tiny_model().double()
    batch = fixed_batch(2)
    images = torch.stack(batch['inputs']).double()
    rows = model.token_embedding.concept_rows('<cat-toy>')
    loss = model.loss(images, batch['captions'], batch['noise_seeds'])['loss']
    (grad,) = torch.autograd.grad(loss, rows)
    direction = torch.randn_like(rows, generator=torch.Generator().manual_seed(0))
    eps = 1e-5
    with torch.no_grad():
        rows += eps * direction
        plus = model.loss(images, batch['captions'], batch['noise_seeds'])['loss']
        rows -= 2 * eps * direction
        minus = model.loss(images, batch['captions'], batch['noise_seeds'])['loss']
    numeric = (plus - minus) / (2 * eps)
    analytic = (grad * direction).sum()
    assert analytic.abs() > 1e-8
    assert torch.allclose(analytic, numeric, rtol=1e-4)


def test_v_prediction_target_is_velocity(monkeypatch):
    model = build_tiny_model()
    model.noise_scheduler.register_to_config(prediction_type='v_prediction')
    batch = fixed_batch(2)
    images = torch.stack(batch['inputs'])
    captured = {}
    original = model.noise_scheduler.get_velocity

    def spy(latents, noise, timesteps):
        captured['velocity'] = original(latents, noise, timesteps)
        return captured['velocity']

    monkeypatch.setattr(model.noise_scheduler, 'get_velocity', spy)
    with torch.no_grad():
        loss_v = model.loss(images, batch['captions'], batch['noise_seeds'])['loss']
        model.noise_scheduler.register_to_config(prediction_type='epsilon')
        loss_eps = model.loss(images, batch['captions'], batch['noise_seeds'])['loss']
    assert 'velocity' in captured
    assert not torch.isclose(loss_v, loss_eps)


def test_noise_seeds_make_the_loss_independent_of_batch_layout():
    model = build_tiny_model()
    batch = fixed_batch(4)
    images = torch.stack(batch['inputs'])
    with torch.no_grad():
        whole = model.loss(images, batch['captions'], batch['noise_seeds'])['loss']
        halves = [model.loss(images[i:i + 2], batch['captions'][i:i + 2],
                             batch['noise_seeds'][i:i + 2])['loss'] for i in (0, 2)]
    assert torch.allclose(whole, sum(halves) / 2, rtol=1e-5)


def unet_timesteps(model, batch, repeats: int = 1) -> torch.Tensor:
    """The timesteps ``loss`` calls the real UNet with, over ``repeats`` seed draws."""
    with unet_timesteps_seen(model) as seen, torch.no_grad():
        for r in range(repeats):
            model.loss(torch.stack(batch['inputs']), batch['captions'],
                       [seed + 1000 * r for seed in batch['noise_seeds']])
    return torch.cat(seen)


def test_train_timesteps_bound_the_timesteps_the_unet_is_trained_at():
    batch = fixed_batch(4)
    low_only = unet_timesteps(build_tiny_model(train_timesteps=(0, 200)), batch, repeats=16)
    high_only = unet_timesteps(build_tiny_model(train_timesteps=(900, 1000)), batch, repeats=16)
    everywhere = unet_timesteps(build_tiny_model(), batch, repeats=16)
    assert low_only.min() >= 0 and low_only.max() < 200
    assert high_only.min() >= 900 and high_only.max() <= 999
    assert everywhere.max() >= 800 and everywhere.min() < 200  # 64 draws over all 1000
    # Each range is used, not just one value of it.
    assert len(set(low_only.tolist())) > 30 and len(set(high_only.tolist())) > 30


def test_state_dict_holds_only_the_learned_rows():
    model = build_tiny_model(num_vectors=2)
    state = model.state_dict()
    assert list(state) == ['token_embedding.rows.0']
    assert state['token_embedding.rows.0'].shape == (2, 32)

    with torch.no_grad():
        model.token_embedding.concept_rows('<cat-toy>').add_(1.0)
    fresh = build_tiny_model(num_vectors=2)
    result = fresh.load_state_dict(model.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(fresh.token_embedding.concept_rows('<cat-toy>'),
                       model.token_embedding.concept_rows('<cat-toy>'))


def test_saved_file_loads_into_diffusers_with_identical_outputs(tmp_path):
    model = build_tiny_model(num_vectors=2)
    with torch.no_grad():  # a distinctive "learned" embedding
        rows = model.token_embedding.concept_rows('<cat-toy>')
        rows.copy_(torch.randn(rows.shape, generator=torch.Generator().manual_seed(1)))
    path = model.save_embeddings(str(tmp_path / 'learned_embeds.safetensors'))

    pipe = StableDiffusionPipeline.from_pretrained(str(TINY_SD))
    pipe.load_textual_inversion(path)
    pipe.set_progress_bar_config(disable=True)
    for prompt in ['a <cat-toy> bag', 'a photo of <cat-toy> next to a <cat-toy>']:
        converted = pipe.maybe_convert_prompt(prompt, pipe.tokenizer)
        ids = pipe.tokenizer(converted, padding='max_length', max_length=77,
                             truncation=True, return_tensors='pt').input_ids
        assert torch.equal(ids, model.tokenize([prompt]))
        with torch.no_grad():
            theirs = pipe.text_encoder(ids)[0]
            ours = model.encode_prompt([prompt])
        assert torch.allclose(theirs, ours, atol=1e-6)
    # A prompt with the token differs from one without it: the rows are used.
    with torch.no_grad():
        assert not torch.allclose(model.encode_prompt(['a <cat-toy> bag']),
                                  model.encode_prompt(['a toy bag']))

    theirs = pipe('a <cat-toy> bag', num_inference_steps=4, height=64, width=64,
                  generator=torch.Generator().manual_seed(7)).images[0]
    ours = model.infer('a <cat-toy> bag', num_inference_steps=4, seed=7,
                       show_progress=False)['samples'][0]
    diff = np.abs(np.asarray(theirs, dtype=int) - np.asarray(ours, dtype=int))
    assert diff.max() <= 1


def test_infer_sizes_seeds_and_leaves_global_rng_alone():
    model = build_tiny_model()
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())

    first = model.infer('a <cat-toy> bag', num_inference_steps=3, height=64, width=96,
                        num_images_per_prompt=2, seed=5, show_progress=False)['samples']
    again = model.infer('a <cat-toy> bag', num_inference_steps=3, height=64, width=96,
                        num_images_per_prompt=2, seed=5, show_progress=False)['samples']
    other = model.infer('a <cat-toy> bag', num_inference_steps=3, height=64, width=96,
                        seed=6, show_progress=False)['samples']
    unseeded = model.infer('a <cat-toy> bag', num_inference_steps=2, show_progress=False)

    assert len(first) == 2 and all(img.size == (96, 64) for img in first)
    assert unseeded['samples'][0].size == (64, 64)  # default: the UNet's native size
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again))
    assert not np.array_equal(np.asarray(first[0]), np.asarray(other[0]))
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]


def test_infer_uses_named_scheduler_and_restores_training_mode():
    model = build_tiny_model(inference_scheduler='DDIMScheduler')
    assert type(model.build_inference_scheduler()).__name__ == 'DDIMScheduler'
    assert type(model.build_inference_scheduler('EulerDiscreteScheduler')).__name__ == \
        'EulerDiscreteScheduler'
    default = build_tiny_model()
    assert type(default.build_inference_scheduler()).__name__ == 'PNDMScheduler'
    model.train()
    ddim = model.infer('a <cat-toy>', num_inference_steps=3, seed=0, show_progress=False)
    euler = model.infer('a <cat-toy>', num_inference_steps=3, seed=0, show_progress=False,
                        scheduler='EulerDiscreteScheduler')
    assert model.training and not model.unet.training
    assert not np.array_equal(np.asarray(ddim['samples'][0]), np.asarray(euler['samples'][0]))


def test_train_keeps_frozen_parts_in_eval_and_skips_the_walk_when_nothing_changed():
    model = build_tiny_model()
    walked = []
    preprocessor_train = model.data_preprocessor.train
    model.data_preprocessor.train = lambda mode=True: walked.append(mode) or preprocessor_train(mode)
    model.train()
    assert model.training and model.data_preprocessor.training
    assert not any(m.training for name in ('unet', 'vae', 'text_encoder')
                   for m in getattr(model, name).modules())
    model.train()  # what mmengine's loop does before every step
    assert walked == []  # mode already held: no walk over the submodules
    model.unet.train()  # a frozen part switched behind the model's back
    model.train()
    assert walked == [True] and not any(m.training for m in model.unet.modules())
    model.eval()
    assert walked == [True, False] and not model.training
    model.train()
    assert walked == [True, False, True] and model.training and model.data_preprocessor.training


def test_val_step_renders_validation_prompts():
    model = build_tiny_model(validation_prompts=['a <cat-toy>', 'a <cat-toy> bag'],
                             validation_cfg=dict(num_inference_steps=2, seed=0,
                                                 show_progress=False))
    results = model.val_step()
    assert [r['prompt'] for r in results] == ['a <cat-toy>', 'a <cat-toy> bag']
    assert all(r['sample'].size == (64, 64) for r in results)
    assert [r['prompt'] for r in model.test_step({'prompts': ['x <cat-toy>']})] == ['x <cat-toy>']


def test_load_embeddings_replaces_own_rows_and_adds_new_tokens(tmp_path):
    trained = build_tiny_model()
    with torch.no_grad():
        trained.token_embedding.concept_rows('<cat-toy>').fill_(0.5)
    path = trained.save_embeddings(str(tmp_path / 'learned_embeds.safetensors'))

    model = build_tiny_model()
    assert model.load_embeddings(path) == ['<cat-toy>']
    assert torch.equal(model.token_embedding.concept_rows('<cat-toy>'), torch.full((1, 32), 0.5))
    assert len(model.tokenizer) == 49409  # replaced, not added again

    model.load_embeddings({'<other>': torch.ones(2, 32)})
    assert model.concepts == ['<cat-toy>', '<other>'] and len(model.tokenizer) == 49411
    assert not model.token_embedding.concept_rows('<other>').requires_grad
    with pytest.raises(ValueError, match="'<other>' is already loaded; pass replace=True"):
        model.load_embeddings({'<other>': torch.zeros(2, 32)})
    model.load_embeddings({'<other>': torch.zeros(2, 32)}, replace=True)
    assert torch.equal(model.token_embedding.concept_rows('<other>'), torch.zeros(2, 32))
    model.load_embeddings(path, token='<renamed>')
    assert '<renamed>' in model.concepts


def test_loading_a_folder_in_diffusers_layout(tmp_path):
    model = build_tiny_model()
    model.save_embeddings(str(tmp_path / 'learned_embeds.safetensors'))
    assert build_tiny_model().load_embeddings(str(tmp_path)) == ['<cat-toy>']


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize('overrides, message', [
    (dict(placeholder_token='toy'), r"\['toy'\] are already in the tokenizer vocabulary"),
    (dict(placeholder_token='<|endoftext|>'), 'already in the tokenizer vocabulary'),
    (dict(initializer_token='cat toy'),
     r"initializer_token 'cat toy' must be exactly one token, but the tokenizer splits it "
     r"into 2: \['cat</w>', 'toy</w>'\]"),
    (dict(initializer_token='zqxjvbwk'), r"'zqxjvbwk' must be exactly one token.*splits it into"),
    (dict(initializer_token=''), r"initializer_token '' must be exactly one token.*into 0"),
    (dict(num_vectors=0), 'num_vectors must be >= 1, got 0'),
    (dict(inference_scheduler='NoSuchScheduler'),
     "Unknown scheduler 'NoSuchScheduler' for this model; use one of: .*DDIMScheduler"),
    (dict(dtype='fp8'), "Unknown dtype 'fp8'"),
    (dict(train_timesteps=(800, 100)), r'train_timesteps=\(800, 100\) is not a range.*0 <= first < end <= 1000'),
    (dict(train_timesteps=(0, 1001)), r'train_timesteps=\(0, 1001\) is not a range'),
    (dict(train_timesteps=(-1, 10)), 'is not a range'),
    (dict(train_timesteps=(0, 0.8)), 'is not a range'),
    (dict(train_timesteps=(800,)), r'give \(first, end\)'),
])
def test_bad_model_config_is_one_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_model(**overrides)


def test_embedding_of_another_base_model_names_both_dims(tmp_path):
    model = build_tiny_model()
    with pytest.raises(ValueError, match=r'shape \(1, 768\).*uses dimension 32'):
        model.load_embeddings({'<cat-toy>': torch.zeros(1, 768)})
    with pytest.raises(ValueError, match=r'shape \(2, 1024\).*uses dimension 32'):
        model.load_embeddings({'<sd2-thing>': torch.zeros(2, 1024)})
    assert model.concepts == ['<cat-toy>'] and len(model.tokenizer) == 49409


def test_vector_count_mismatch_names_the_fix():
    model = build_tiny_model()
    with pytest.raises(ValueError, match='set num_vectors=3 in the config'):
        model.load_embeddings({'<cat-toy>': torch.zeros(3, 32)})


def test_sd2_style_v_prediction_model_learns():
    """Tiny SD 2.x: v-prediction scheduler, gelu text encoder, '!' padding."""
    model = build_tiny_model(pretrained_model=str(TINY_SD.parent / 'tiny-sd2'))
    assert model.noise_scheduler.config.prediction_type == 'v_prediction'
    assert model.tokenize(['a <cat-toy>'])[0, -1].item() == 0  # padded with "!"
    wrapper = optim_wrapper(model, lr=5e-3)
    data = fixed_batch()
    losses = [model.train_step(data, wrapper)['loss'].item() for _ in range(30)]
    assert losses[-1] < losses[0] and np.mean(losses[-5:]) < np.mean(losses[:5])


def test_renders_that_are_not_finite_are_an_error_not_black_images():
    from mmti.models.sampling import NonFiniteRenderError
    from mmti.utils import UserError
    model = build_tiny_model()
    with torch.no_grad():  # finite, but far past what the text encoder can carry
        model.token_embedding.concept_rows('<cat-toy>').fill_(3e38)
    with pytest.raises(NonFiniteRenderError, match=r"The renders of 'a <cat-toy> bag' hold NaN "
                                                   r'or inf: .*no image was made'):
        model.infer('a <cat-toy> bag', num_inference_steps=2, seed=0, show_progress=False)
    assert issubclass(NonFiniteRenderError, UserError)  # the CLIs: one line, exit status 2
    # Other prompts, without the rows, still render.
    image = model.infer('a toy bag', num_inference_steps=2, seed=0, show_progress=False)
    assert np.asarray(image['samples'][0]).std() > 0
