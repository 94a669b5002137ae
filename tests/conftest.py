"""Shared fixtures: everything offline, on the CPU, on the bundled tiny model."""
import os
from pathlib import Path

os.environ['HF_HUB_OFFLINE'] = '1'  # before diffusers/transformers are imported
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_SD = REPO_ROOT / 'data' / 'tiny-sd'
CAT_TOY = REPO_ROOT / 'data' / 'cat_toy'

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope='session')
def tiny_sd() -> Path:
    return TINY_SD


@pytest.fixture(scope='session')
def cat_toy() -> Path:
    return CAT_TOY


def build_tiny_model(**overrides):
    """A TextualInversion on the bundled tiny SD folder."""
    import mmti.models  # noqa: F401
    from mmti.registry import MODELS
    cfg = dict(type='TextualInversion', pretrained_model=str(TINY_SD),
               placeholder_token='<cat-toy>', initializer_token='toy')
    cfg.update(overrides)
    return MODELS.build(cfg)


@pytest.fixture
def tiny_model():
    return build_tiny_model()
