"""Build mmengine's Runner after checking the config, so bad input fails early.

mmengine creates the work dir, log files and a config dump before it builds
the model or touches the data; a typo in the concept folder would then leave
those behind. Here the model and a throwaway copy of the dataset are built
first, and the work dir is checked for writability without creating it.
"""
import os
from pathlib import Path

from mmengine.config import Config
from mmengine.registry import DefaultScope
import torch
from mmengine.runner import Runner, find_latest_checkpoint

from mmti.registry import DATASETS, MODELS


def check_work_dir(work_dir: str) -> None:
    """Fail with a clear message if ``work_dir`` cannot be created or written."""
    path = Path(work_dir).resolve()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f'Work dir {work_dir}: {existing} is a file, not a folder; '
                                 'pass another --work-dir.')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f'Work dir {work_dir} is not writable ({existing} denies it); '
                              'pass --work-dir with a folder you can write to.')


def resume_checkpoint(cfg: Config) -> str | None:
    """The checkpoint ``--resume`` will load, checked to be whole and safe."""
    if not cfg.get('resume'):
        return None
    path = cfg.get('load_from') or find_latest_checkpoint(cfg.work_dir)
    if path is None:
        return None  # nothing to resume from: mmengine starts afresh, as documented
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint {path} (from {cfg.work_dir}/last_checkpoint) does '
                                'not exist; pass --resume PATH with an existing checkpoint.')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # truncated zip, wrong format, unsafe pickle ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f'Cannot resume from {path}: the file is corrupt, truncated or not an '
                         f'mmti checkpoint ({reason}). Delete it and pass --resume with an '
                         'earlier iter_*.pth.') from None
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint or 'meta' not in checkpoint:
        raise ValueError(f'Cannot resume from {path}: it is not an mmengine checkpoint '
                         '(no state_dict/meta).')
    return path


def build_runner(cfg: Config) -> Runner:
    """``Runner.from_cfg`` with the model, the data and the resume file checked first."""
    check_work_dir(cfg.work_dir)
    resume_checkpoint(cfg)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmti')):
        DATASETS.build(cfg.train_dataloader.dataset)  # raises on a bad concept folder
        model = MODELS.build(cfg.model)
    return Runner(
        model=model,
        work_dir=cfg.work_dir,
        train_dataloader=cfg.get('train_dataloader'),
        val_dataloader=cfg.get('val_dataloader'),
        test_dataloader=cfg.get('test_dataloader'),
        train_cfg=cfg.get('train_cfg'),
        val_cfg=cfg.get('val_cfg'),
        test_cfg=cfg.get('test_cfg'),
        auto_scale_lr=cfg.get('auto_scale_lr'),
        optim_wrapper=cfg.get('optim_wrapper'),
        param_scheduler=cfg.get('param_scheduler'),
        val_evaluator=cfg.get('val_evaluator'),
        test_evaluator=cfg.get('test_evaluator'),
        default_hooks=cfg.get('default_hooks'),
        custom_hooks=cfg.get('custom_hooks'),
        load_from=cfg.get('load_from'),
        resume=cfg.get('resume', False),
        launcher=cfg.get('launcher', 'none'),
        env_cfg=cfg.get('env_cfg', dict(dist_cfg=dict(backend='nccl'))),
        log_processor=cfg.get('log_processor'),
        log_level=cfg.get('log_level', 'INFO'),
        visualizer=cfg.get('visualizer'),
        default_scope=cfg.get('default_scope', 'mmti'),
        randomness=cfg.get('randomness', dict(seed=None)),
        experiment_name=cfg.get('experiment_name'),
        cfg=cfg)
