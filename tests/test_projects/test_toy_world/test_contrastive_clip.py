"""ContrastiveCLIP: learns on toy-world batches, exports loadable transformers folders."""
import math

import pytest
import torch
from safetensors import safe_open
from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

from mmti_testing import TINY_SD
from projects.toy_world.datasets.toy_world_dataset import ToyWorldDataset
from projects.toy_world.models import ContrastiveCLIP
from mmti.registry import MODELS

SIZE = 32


def tiny_clip(**overrides) -> ContrastiveCLIP:
    cfg = dict(type='ContrastiveCLIP', tokenizer=str(TINY_SD / 'tokenizer'),
               text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64),
               vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, patch_size=8, image_size=SIZE),
               projection_dim=32, max_length=16, init_seed=0)
    cfg.update(overrides)
    return MODELS.build(cfg)


@pytest.fixture(scope='module')
def batch():
    dataset = ToyWorldDataset(length=100, seed=0, size=SIZE, caption_dropout=0.0)
    samples = [dataset[i] for i in range(16)]
    captions = [s['captions'] for s in samples]
    assert len(set(captions)) == 16  # distinct captions: a well-posed contrastive batch
    return torch.stack([s['inputs'] for s in samples]), captions


@pytest.fixture(scope='module')
def trained(batch):
    """A tiny CLIP after 30 AdamW steps on the fixed batch, and its losses."""
    torch.manual_seed(0)
    model = tiny_clip()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    losses = []
    images, captions = batch
    for _ in range(30):
        loss = model(images, captions, mode='loss')['loss']
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def test_config_matches_stable_diffusion_text_encoder():
    model = tiny_clip()
    text = model.clip.config.text_config
    assert (text.vocab_size, text.max_position_embeddings) == (49408, 77)
    assert (text.bos_token_id, text.eos_token_id, text.pad_token_id) == (49406, 49407, 49407)
    assert model.clip.text_model.eos_token_id == 49407  # pooling at the first end token
    assert model.clip.config.vision_config.image_size == SIZE
    # init_seed fixes the weights whatever the global RNG state
    torch.manual_seed(123)
    again = tiny_clip()
    assert torch.equal(again.clip.logit_scale, model.clip.logit_scale)
    for (name, a), (_, b) in zip(model.clip.named_parameters(), again.clip.named_parameters()):
        assert torch.equal(a, b), name
    other = tiny_clip(init_seed=1)
    assert not torch.equal(other.clip.text_model.embeddings.token_embedding.weight,
                           model.clip.text_model.embeddings.token_embedding.weight)


def test_tokenize_pads_to_max_length_and_pools_at_eos(batch):
    model = tiny_clip()
    tokens = model.tokenize(['a small red circle'])
    ids = tokens['input_ids'][0].tolist()
    assert len(ids) == 16
    assert ids[0] == 49406 and ids[5] == 49407 and ids[6:] == [49407] * 10
    with torch.no_grad():
        out = model.clip.text_model(**tokens)
    # the pooled output is the hidden state of the first end token, not the last pad
    torch.testing.assert_close(out.pooler_output[0], out.last_hidden_state[0, 5])
    assert not torch.allclose(out.pooler_output[0], out.last_hidden_state[0, -1])


def test_bad_arguments(batch):
    with pytest.raises(ValueError, match='max_length'):
        tiny_clip(max_length=78)
    model = tiny_clip()
    images, captions = batch
    with pytest.raises(ValueError, match='image_size'):
        model(torch.nn.functional.interpolate(images, size=16), captions)
    with pytest.raises(ValueError, match='one caption per image'):
        model(images, captions[:-1])
    with pytest.raises(ValueError, match='Invalid mode'):
        model(images, captions, mode='bogus')


def test_upsample_inputs_enlarges_small_images_bicubically(batch):
    model = tiny_clip(upsample_inputs=True)
    images, _ = batch
    small = torch.nn.functional.interpolate(images, size=SIZE // 2, mode='area')
    expected = tiny_clip().normalize(torch.nn.functional.interpolate(
        small, size=SIZE, mode='bicubic', align_corners=False).clamp(-1, 1))
    torch.testing.assert_close(model.normalize(small), expected)
    torch.testing.assert_close(model.normalize(images), tiny_clip().normalize(images))


def test_normalize_uses_clip_statistics():
    model = tiny_clip()
    white = torch.ones(1, 3, SIZE, SIZE)  # +1 in the datasets' range is pixel value 1
    out = model.normalize(white)
    expected = (1 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor(
        [0.26862954, 0.26130258, 0.27577711])
    torch.testing.assert_close(out[0, :, 0, 0], expected)


def test_loss_decreases_on_a_fixed_batch(trained):
    _, losses = trained
    # untrained: near chance, ln(16) for 16 pairs
    assert abs(losses[0] - math.log(16)) < 0.5, losses[0]
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(math.isfinite(x) for x in losses)


def test_predict_returns_logits_that_match_pairs(trained, batch):
    model, _ = trained
    images, captions = batch
    with torch.no_grad():
        out = model(images, captions, mode='predict')
    assert out['logits_per_image'].shape == (16, 16)
    torch.testing.assert_close(out['logits_per_text'], out['logits_per_image'].t())
    # after training on this batch, at least half the images pick their own caption (chance: 1/16)
    accuracy = (out['logits_per_image'].argmax(1) == torch.arange(16)).float().mean().item()
    assert accuracy >= 0.5, accuracy


def test_export_round_trip(trained, batch, tmp_path):
    model, _ = trained
    images, captions = batch
    path = tmp_path / 'export'
    model.export(path)
    loaded = CLIPModel.from_pretrained(str(path)).eval()
    tokenizer = CLIPTokenizer.from_pretrained(str(path))
    tokens = tokenizer(captions, padding='max_length', max_length=16, truncation=True,
                       return_tensors='pt')
    with torch.no_grad():
        expected = model(images, captions, mode='predict')['logits_per_image']
        got = loaded(pixel_values=model.normalize(images), input_ids=tokens.input_ids,
                     attention_mask=tokens.attention_mask).logits_per_image
    torch.testing.assert_close(got, expected)

    # a second export replaces the first and leaves no temporary folders behind
    with torch.no_grad():
        model.clip.logit_scale.add_(0.5)
    try:
        model.export(path)
        again = CLIPModel.from_pretrained(str(path))
        assert again.logit_scale.item() == pytest.approx(model.clip.logit_scale.item())
        assert again.logit_scale.item() != pytest.approx(loaded.logit_scale.item())
    finally:
        with torch.no_grad():
            model.clip.logit_scale.sub_(0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['export']


def test_export_refuses_non_finite_weights(tmp_path):
    model = tiny_clip()
    model.export(tmp_path / 'export')
    before = (tmp_path / 'export' / 'model.safetensors').read_bytes()
    with torch.no_grad():
        model.clip.text_projection.weight[0, 0] = float('nan')
    with pytest.raises(FloatingPointError):
        model.export(tmp_path / 'export')
    assert (tmp_path / 'export' / 'model.safetensors').read_bytes() == before


def test_exported_text_encoder_matches_text_tower(trained, tmp_path):
    model, _ = trained
    path = model.export_text_encoder(tmp_path / 'text_encoder')
    encoder = CLIPTextModel.from_pretrained(str(path)).eval()
    # transformers 5 layout, like data/tiny-sd/text_encoder: no 'text_model.' prefix
    with safe_open(str(path / 'model.safetensors'), 'pt') as f:
        keys = set(f.keys())
    assert 'embeddings.token_embedding.weight' in keys
    assert not any(k.startswith('text_model.') for k in keys)
    assert keys == set(model.clip.text_model.state_dict()) - {'embeddings.position_ids'}

    # as Stable Diffusion calls it: padded to 77, no attention mask
    tokenizer = CLIPTokenizer.from_pretrained(str(path))
    ids = tokenizer(['a small red circle', 'a large blue star at the top on a black background'],
                    padding='max_length', max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors='pt').input_ids
    assert ids.shape == (2, 77)
    with torch.no_grad():
        expected = model.clip.text_model(input_ids=ids)
        got = encoder(input_ids=ids)
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state)
    torch.testing.assert_close(got.pooler_output, expected.pooler_output)
    # trained weights, not a fresh initialisation
    fresh = tiny_clip().clip.text_model
    with torch.no_grad():
        assert not torch.allclose(fresh(input_ids=ids).last_hidden_state, got.last_hidden_state)


@pytest.mark.parametrize('method', ['export', 'export_text_encoder'])
def test_exported_tokenizer_is_stable_diffusions(method, tmp_path):
    model = tiny_clip()
    path = getattr(model, method)(tmp_path / method)
    exported = CLIPTokenizer.from_pretrained(str(path))
    reference = CLIPTokenizer.from_pretrained(str(TINY_SD / 'tokenizer'))
    assert exported.model_max_length == 77
    assert model.tokenizer.model_max_length == 77  # the model's own copy is not changed
    assert len(exported) == 49408
    for kwargs in (dict(), dict(padding='max_length', max_length=77)):
        got = exported('a small red circle', **kwargs).input_ids
        assert got == reference('a small red circle', **kwargs).input_ids
    assert exported('a small red circle').input_ids == [49406, 320, 2442, 736, 7117, 49407]


def test_evaluation_clip_config_keeps_near_twins_together_and_starts_from_stage_one():
    from mmengine.config import Config

    from mmti_testing import REPO_ROOT
    stage_1 = Config.fromfile(REPO_ROOT / 'projects' / 'toy_world' / 'configs' / 'clip.py')
    cfg = Config.fromfile(REPO_ROOT / 'projects' / 'toy_world' / 'configs' / 'clip_eval.py')
    loader = cfg.train_dataloader
    assert loader.batch_size % loader.dataset.group_size == 0  # no group straddles two batches
    assert loader.sampler.shuffle is False  # consecutive indices form the groups
    assert loader.dataset.size < cfg.model.vision_config.image_size and cfg.model.upsample_inputs
    # Fine-tunes the final checkpoint of projects/toy_world/configs/clip.py.
    assert cfg.load_from == f'{stage_1.work_dir}/iter_{stage_1.train_cfg.max_iters}.pth'
    assert cfg.work_dir != stage_1.work_dir
