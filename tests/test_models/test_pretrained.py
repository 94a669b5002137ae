"""Components load through from_pretrained on the folder a config names."""
import shutil

import torch
from mmti_testing import TINY_SD, build_tiny_model
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel


def test_one_pretrained_model_string_feeds_every_component():
    model = build_tiny_model()
    assert model.unet.config.cross_attention_dim == 32
    assert model.vae.config.block_out_channels == [32, 32, 64, 64]
    assert model.text_encoder.config.hidden_size == 32
    assert model.tokenizer.model_max_length == 77
    assert type(model.noise_scheduler).__name__ == 'DDPMScheduler'
    assert model.noise_scheduler.config.beta_schedule == 'scaled_linear'


def test_a_component_config_can_point_elsewhere(tmp_path):
    other_vae = tmp_path / 'other'
    shutil.copytree(TINY_SD / 'vae', other_vae / 'vae')
    model = build_tiny_model(vae=dict(type='AutoencoderKL', pretrained_model_name_or_path=str(other_vae),
                                      subfolder='vae'))
    assert model.vae.config._name_or_path.startswith(str(other_vae))


def test_dtype_applies_to_frozen_weights_only():
    model = build_tiny_model(dtype='bf16')
    assert model.unet.dtype == torch.bfloat16 and model.vae.dtype == torch.bfloat16
    assert model.token_embedding.base.weight.dtype == torch.bfloat16
    assert model.token_embedding.concept_rows('<cat-toy>').dtype == torch.float32
    images = torch.zeros(1, 3, 64, 64)
    loss = model.loss(images, ['a <cat-toy>'], [0])['loss']
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert model.token_embedding.concept_rows('<cat-toy>').grad.dtype == torch.float32


def test_text_encoder_saved_with_the_old_key_layout_loads_the_same_weights(tmp_path):
    """Real SD 1.5 checkpoints carry 'text_model.'-prefixed keys (transformers < 5)."""
    legacy = tmp_path / 'text_encoder'
    shutil.copytree(TINY_SD / 'text_encoder', legacy)
    state = load_file(legacy / 'model.safetensors')
    assert not any(k.startswith('text_model.') for k in state)
    old = {f'text_model.{k}': v for k, v in state.items()}
    old['text_model.embeddings.position_ids'] = torch.arange(77)[None]  # as in SD 1.5's file
    save_file(old, legacy / 'model.safetensors', metadata={'format': 'pt'})

    loaded = CLIPTextModel.from_pretrained(legacy)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
