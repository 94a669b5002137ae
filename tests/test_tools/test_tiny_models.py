"""tools/dev/tiny_models.py: the full-size random-weight families stand in for
the real checkpoints in GPU speed and memory checks, so their architectures
must be the originals' to the parameter."""
import sys

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from mmti_testing import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / 'tools' / 'dev'))
import tiny_models  # noqa: E402

# Parameter counts of the published checkpoints (runwayml/stable-diffusion-v1-5,
# stabilityai/stable-diffusion-xl-base-1.0).
SD15 = {'unet': (UNet2DConditionModel, 'SD15_FULL_UNET', 859_520_964),
        'vae': (AutoencoderKL, 'SD15_FULL_VAE', 83_653_863),
        'text_encoder': (CLIPTextModel, 'SD15_FULL_TEXT_ENCODER', 123_060_480)}
SDXL = {'unet': (UNet2DConditionModel, 'SDXL_FULL_UNET', 2_567_463_684),
        'vae': (AutoencoderKL, 'SDXL_FULL_VAE', 83_653_863),
        'text_encoder': (CLIPTextModel, 'SDXL_FULL_TEXT_ENCODER', 123_060_480),
        'text_encoder_2': (CLIPTextModelWithProjection, 'SDXL_FULL_TEXT_ENCODER_2', 694_659_840)}


def _build(cls, config: dict) -> torch.nn.Module:
    with torch.device('meta'):  # sizes only: no memory, no random init
        if cls in (CLIPTextModel, CLIPTextModelWithProjection):
            return cls(CLIPTextConfig(**config))
        return cls(**config)


@pytest.mark.parametrize('family,parts', [('sd15-full-random', SD15), ('sdxl-full-random', SDXL)])
def test_full_random_families_have_the_original_sizes(family, parts):
    assert family in tiny_models.MODEL_FAMILIES
    for name, (cls, config_name, published) in parts.items():
        model = _build(cls, getattr(tiny_models, config_name))
        assert sum(p.numel() for p in model.parameters()) == published, (family, name)


def test_sdxl_full_unet_reads_both_text_encoders_and_the_time_ids():
    unet = tiny_models.SDXL_FULL_UNET
    assert unet['cross_attention_dim'] == 768 + 1280  # both encoders' hidden states
    assert unet['projection_class_embeddings_input_dim'] == 2816  # 6 time ids x 256 + pooled 1280
    assert unet['sample_size'] * 8 == 1024
