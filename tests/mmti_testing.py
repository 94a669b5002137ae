"""Helpers shared by the tests: paths, a tiny-model builder and a tiny CLIP folder."""
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

os.environ['HF_HUB_OFFLINE'] = '1'  # before diffusers/transformers are imported
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_SD = REPO_ROOT / 'data' / 'tiny-sd'
CAT_TOY = REPO_ROOT / 'data' / 'cat_toy'


def build_tiny_model(**overrides):
    """A TextualInversion on the bundled tiny SD folder."""
    import mmti.models  # noqa: F401
    from mmti.registry import MODELS
    cfg = dict(type='TextualInversion', pretrained_model=str(TINY_SD),
               placeholder_token='<cat-toy>', initializer_token='toy')
    cfg.update(overrides)
    return MODELS.build(cfg)


@contextmanager
def unet_timesteps_seen(model):
    """Collects the timesteps the model's real UNet is called with (a forward
    pre-hook, removed on exit); read the list after the block."""
    seen = []
    handle = model.unet.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    try:
        yield seen
    finally:
        handle.remove()


TOKENIZER_FILES = ('vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json')


def save_tiny_clip(folder):
    """A random CLIP (image size 32, projection 16) + the tiny SD tokenizer."""
    from transformers import CLIPConfig, CLIPModel
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                         eos_token_id=49407, bos_token_id=49406, pad_token_id=49407),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
                           num_hidden_layers=2, num_attention_heads=4),
        projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(TINY_SD / 'tokenizer' / name, folder / name)
    return folder
