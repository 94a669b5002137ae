"""Each speed/memory switch leaves what is learned unchanged (to float tolerance)."""
import pytest
import torch
from mmti_testing import CAT_TOY, build_tiny_model

from mmti.datasets import TextualInversionDataset

CACHEABLE = [dict(type='ResizeShorterSide', size=64), dict(type='CenterCrop', size=64),
             dict(type='RandomHorizontalFlip'), dict(type='PackInputs')]


def batch(pipeline=CACHEABLE, indices=range(4)) -> dict:
    dataset = TextualInversionDataset(str(CAT_TOY), '<cat-toy>', repeats=2, seed=0,
                                      pipeline=pipeline)
    samples = [dataset[i] for i in indices]
    return {key: [s[key] for s in samples]
            for key in ('inputs', 'captions', 'noise_seeds', 'latent_keys')}


def loss_and_grad(model, data) -> tuple[torch.Tensor, torch.Tensor]:
    rows = model.token_embedding.concept_rows('<cat-toy>')
    rows.grad = None
    loss = model.loss(torch.stack(data['inputs']), data['captions'], data['noise_seeds'],
                      data['latent_keys'])['loss']
    loss.backward()
    return loss.detach(), rows.grad.clone()


def count_vae_encodes(model) -> list:
    calls = []
    model.vae.encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    return calls


def test_latent_cache_encodes_each_variant_once_and_changes_nothing():
    data = batch(indices=[0, 1, 2, 3, 5, 10])  # 5 and 10 repeat images 0 and 0 (maybe flipped)
    assert all(k is not None for k in data['latent_keys'])
    variants = len(set(data['latent_keys']))
    assert variants < len(data['latent_keys'])  # the batch repeats a variant

    cached = build_tiny_model(latent_cache=True)
    calls = count_vae_encodes(cached)
    first = loss_and_grad(cached, data)
    again = loss_and_grad(cached, data)
    assert sum(calls) == variants  # one single-image encode per variant, none on the second step
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])

    uncached = build_tiny_model(latent_cache=False)
    calls = count_vae_encodes(uncached)
    plain = loss_and_grad(uncached, data)
    assert sum(calls) == len(data['latent_keys'])
    assert torch.allclose(first[0], plain[0], rtol=1e-5)
    assert torch.allclose(first[1], plain[1], rtol=1e-4, atol=1e-7)


def test_random_crop_disables_the_cache():
    pipeline = [dict(type='ResizeShorterSide', size=72), dict(type='RandomCrop', size=64),
                dict(type='RandomHorizontalFlip'), dict(type='PackInputs')]
    data = batch(pipeline)
    assert data['latent_keys'] == [None] * 4
    model = build_tiny_model()
    calls = count_vae_encodes(model)
    loss_and_grad(model, data)
    loss_and_grad(model, data)
    assert calls == [4, 4] and model.latent_cache == {}


def test_flipped_and_unflipped_images_get_separate_cache_entries():
    data = batch(indices=range(20))
    keys = {k: flipped for k, flipped in zip(data['latent_keys'], range(20))}
    assert any(k.split('|')[2] == 'True' for k in keys) and any(k.split('|')[2] == 'False' for k in keys)
    assert len(set(data['latent_keys'])) <= 2 * 5


def test_token_cache_matches_the_tokenizer_and_follows_new_concepts():
    model = build_tiny_model()
    prompts = ['a <cat-toy> bag', 'a photo of <new>', 'a <cat-toy> bag']
    first = model.tokenize(prompts)
    fresh = model.tokenizer([model.expand_prompt(p) for p in prompts], padding='max_length',
                            max_length=77, truncation=True, return_tensors='pt').input_ids
    assert torch.equal(first, fresh)
    model.load_embeddings({'<new>': torch.zeros(2, 32)})
    after = model.tokenize(prompts)
    assert torch.equal(after[0], first[0]) and not torch.equal(after[1], first[1])
    new_id = model.token_embedding.concept_id_range('<new>').start
    assert after[1].tolist().count(new_id) == 1


def test_gradient_checkpointing_gives_the_same_loss_and_gradient():
    data = batch()
    plain = loss_and_grad(build_tiny_model(), data)
    checkpointed_model = build_tiny_model(gradient_checkpointing=True)
    assert checkpointed_model.unet.is_gradient_checkpointing
    checkpointed = loss_and_grad(checkpointed_model, data)
    assert torch.allclose(plain[0], checkpointed[0], rtol=1e-6)
    assert torch.allclose(plain[1], checkpointed[1], rtol=1e-5, atol=1e-8)


def test_half_precision_frozen_weights_learn_the_same_thing_approximately():
    data = batch()
    full = loss_and_grad(build_tiny_model(), data)
    half = loss_and_grad(build_tiny_model(dtype='bf16'), data)
    assert half[0].dtype == torch.float32 and half[1].dtype == torch.float32
    assert torch.allclose(full[0], half[0], rtol=2e-2)
    cosine = torch.nn.functional.cosine_similarity(full[1].flatten(), half[1].flatten(), dim=0)
    assert cosine > 0.95


def test_compiled_unet_gives_the_same_loss_and_gradient():
    data = batch(indices=[0, 1])
    plain = loss_and_grad(build_tiny_model(), data)
    model = build_tiny_model(compile_unet='aot_eager')  # graph capture + autograd, no codegen
    assert hasattr(model.unet, '_compiled_call_impl') and model.unet._compiled_call_impl is not None
    compiled = loss_and_grad(model, data)
    assert torch.equal(plain[0], compiled[0]) and torch.equal(plain[1], compiled[1])


@pytest.mark.skipif(torch.cuda.is_available(), reason='inductor is allowed on a GPU')
def test_inductor_on_cpu_is_refused_with_the_reason():
    with pytest.raises(ValueError, match='inductor backend is refused on CPU: it computed wrong'):
        build_tiny_model(compile_unet=True)
