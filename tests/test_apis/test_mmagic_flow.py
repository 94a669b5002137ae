"""The seed's (mmagic's) flow, as docs/migrating_from_mmagic.md writes it.

Train, then ``torch.load`` an ``iter_N.pth``, strip ``module.`` prefixes,
``load_state_dict(strict=False)`` into a model built from the config, and
sample: the model holds exactly the checkpoint's rows (those of the
``learned_embeds.safetensors`` written at the same step).
"""
import numpy as np
import pytest
import torch
from mmengine.config import Config
from safetensors.torch import load_file
from tool_runner import TINY_CONFIG, run_tool

import mmti  # noqa: F401  (all MODELS.build needs)
from mmti.registry import MODELS

TOKEN = '<cat-toy>'


@pytest.fixture(scope='module')
def work_dir(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('seed_flow')
    run_tool('tools/train.py', TINY_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
             'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2',
             'default_hooks.embedding_save.interval=2',
             'default_hooks.validation_samples.interval=0')
    return work_dir


def _model_from_checkpoint(path, prefix=''):
    # The documented snippet, line for line.
    cfg = Config.fromfile(TINY_CONFIG)
    model = MODELS.build(cfg.model)
    state_dict = torch.load(path, map_location='cpu', weights_only=True)['state_dict']
    state_dict = {prefix + k: v for k, v in state_dict.items()}  # as a DDP wrapper saves it
    state_dict = {k.removeprefix('module.'): v for k, v in state_dict.items()}
    model.load_state_dict(state_dict, strict=False)
    return model


@pytest.mark.slow
@pytest.mark.parametrize('prefix', ['', 'module.'])
def test_checkpoint_loads_into_a_model_built_from_the_config(work_dir, prefix):
    checkpoint = work_dir / 'iter_2.pth'
    model = _model_from_checkpoint(checkpoint, prefix)
    rows = model.get_embeddings([TOKEN])[TOKEN]
    saved = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']
    (trained,) = [v for k, v in saved.items() if 'rows' in k]
    assert torch.equal(rows, trained.reshape(rows.shape))
    assert torch.equal(rows, load_file(work_dir / 'learned_embeds.safetensors')[TOKEN])
    fresh = MODELS.build(Config.fromfile(TINY_CONFIG).model).get_embeddings([TOKEN])[TOKEN]
    assert not torch.equal(rows, fresh)  # the trained rows, not the initializer's


@pytest.mark.slow
def test_checkpoint_samples_as_the_embedding_file_does(work_dir):
    model = _model_from_checkpoint(work_dir / 'iter_2.pth')
    images = model.infer(f'a {TOKEN} bag', num_inference_steps=2, seed=0,
                         show_progress=False)['samples']
    other = MODELS.build(Config.fromfile(TINY_CONFIG).model)
    other.load_embeddings(str(work_dir / 'learned_embeds.safetensors'))
    expected = other.infer(f'a {TOKEN} bag', num_inference_steps=2, seed=0,
                           show_progress=False)['samples']
    assert np.array_equal(np.asarray(images[0]), np.asarray(expected[0]))
