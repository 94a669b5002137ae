"""Tiny in-process mmengine runs on configs/textual_inversion_tiny.py, shared by the hook tests."""
import itertools
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmti_testing import CAT_TOY, REPO_ROOT, TINY_SD

TINY_CONFIG = REPO_ROOT / 'configs' / 'textual_inversion_tiny.py'
_run_ids = itertools.count()


def tiny_config(work_dir, max_iters: int, checkpoint_interval: int, embedding_interval: int,
                validation_interval: int | None, max_keep_ckpts: int | None = None,
                batch_size: int = 2, num_images_per_prompt: int = 1) -> Config:
    """The tiny config, made smaller; ``validation_interval=None`` drops sampling."""
    cfg = Config.fromfile(str(TINY_CONFIG))
    cfg.work_dir = str(work_dir)
    # A unique name: mmengine keys its MessageHub, logger and visualizer on it,
    # and runners built within the same second would otherwise share them.
    cfg.experiment_name = f'mmti_test_{next(_run_ids)}'
    cfg.model.pretrained_model = str(TINY_SD)
    cfg.model.validation_cfg.num_inference_steps = 2
    cfg.model.validation_cfg.num_images_per_prompt = num_images_per_prompt
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_dataloader.dataset.data_root = str(CAT_TOY)
    cfg.train_cfg.max_iters = max_iters
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = checkpoint_interval
    if max_keep_ckpts is not None:  # else the config's (3)
        cfg.default_hooks.checkpoint.max_keep_ckpts = max_keep_ckpts
    # mmti's hooks by name; None drops the hook (NonFiniteLossHook stays).
    cfg.default_hooks.embedding_save.interval = embedding_interval
    if validation_interval is None:
        cfg.default_hooks.validation_samples = None
    else:
        cfg.default_hooks.validation_samples.interval = validation_interval
    return cfg


class RecordRows(Hook):
    """After every iteration (after the saving hooks) record the learned rows
    and the bytes of the checkpoint files, keyed by step."""

    priority = 'LOWEST'

    def __init__(self):
        self.rows: dict[int, torch.Tensor] = {}
        self.files: dict[int, dict[str, bytes]] = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        step = runner.iter + 1
        self.rows[step] = runner.model.token_embedding.concept_rows('<cat-toy>').detach().clone()
        work_dir = Path(runner.work_dir)
        self.files[step] = {p.name: p.read_bytes() for p in work_dir.iterdir()
                            if p.is_file() and (p.suffix == '.pth' or p.name == 'last_checkpoint')}


def build(cfg: Config):
    from mmti.engine import build_runner
    runner = build_runner(cfg)
    recorder = RecordRows()
    runner.register_hook(recorder)
    return runner, recorder


def train(cfg: Config, resume: bool = False, hooks=()):
    """Build the runner (with :class:`RecordRows`), add ``hooks``, train; ``(runner, recorder)``."""
    cfg.resume = resume
    runner, recorder = build(cfg)
    for hook in hooks:
        runner.register_hook(hook)
    runner.train()
    return runner, recorder


class Run:
    def __init__(self, runner, recorder, work_dir, settings):
        self.runner, self.recorder, self.work_dir = runner, recorder, work_dir
        self.settings = settings
        self.model = runner.model


SHARED = dict(max_iters=5, checkpoint_interval=1, max_keep_ckpts=2, embedding_interval=2,
              validation_interval=0, num_images_per_prompt=2, batch_size=1)


@pytest.fixture(scope='session')
def shared_run(tmp_path_factory) -> Run:
    """Five steps: a checkpoint every step (keep 2), embeddings every 2, samples at the end."""
    work_dir = tmp_path_factory.mktemp('shared_run')
    runner, recorder = build(tiny_config(work_dir, **SHARED))
    runner.train()
    return Run(runner, recorder, work_dir, dict(SHARED))


@pytest.fixture
def build_tiny_runner():
    """``build_tiny_runner(work_dir, **tiny_config kwargs) -> (runner, recorder)``."""
    def make(work_dir, **kwargs):
        return build(tiny_config(work_dir, **kwargs))
    return make


class Interrupt(Hook):
    """Stop the run with an exception after ``step`` (after its checkpoint)."""

    priority = 'LOWEST'

    def __init__(self, step):
        self.step = step

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.step:
            raise KeyboardInterrupt
