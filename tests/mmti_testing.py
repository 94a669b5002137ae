"""Helpers shared by the tests: paths and a tiny-model builder."""
import os
from pathlib import Path

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
