"""Iteration checkpoints that survive a kill, load safely and are always finite."""
import os
from pathlib import Path

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from mmti.fileio import atomic_write
from mmti.fileio.atomic_write import remove_stale_temps
from mmti.registry import HOOKS
from .non_finite import NonFiniteLossError, all_finite, stop_message
from .plain_state import from_plain, to_plain


@HOOKS.register_module()
class AtomicCheckpointHook(Hook):
    """Save ``iter_N.pth`` every ``interval`` iterations (and at the last,
    or where the run is stopped early).

    Differences from mmengine's ``CheckpointHook``, which this replaces in
    ``default_hooks.checkpoint``:

    - the checkpoint is written under a temporary name, flushed and renamed,
      and ``last_checkpoint`` is replaced atomically after it, so a kill at
      any moment leaves whole files and a pointer to one of them;
    - parameters that are not finite are never saved (the run stops with
      :class:`NonFiniteLossError`), so ``last_checkpoint`` always names a
      finite checkpoint;
    - with ``max_keep_ckpts`` an old checkpoint is deleted only after the new
      one is written, finite and pointed at;
    - the message hub is stored as tensors and builtins, so checkpoints load
      with ``torch.load(weights_only=True)``;
    - ``--resume`` trains with the config's learning rate
      (:func:`use_configured_lr`), so lowering it after a divergence works.

    Only rank 0 touches files. ``mmengine``'s ``Runner.resume`` finds the
    checkpoint through ``last_checkpoint`` as usual.

    Args:
        interval: Iterations between checkpoints; 0 or less: only the last.
        by_epoch: Must be False (accepted for configs written for mmengine).
        max_keep_ckpts: Keep this many newest checkpoints; 0 or less: all.
        save_last: Also save at the last iteration.
        save_optimizer: Store the optimizer state (needed for ``--resume``).
        save_param_scheduler: Store the schedulers' state.
        filename_tmpl: Checkpoint name with ``{}`` for the iteration.
    """

    priority = 'VERY_LOW'

    def __init__(self, interval: int = -1, by_epoch: bool = False, max_keep_ckpts: int = -1,
                 save_last: bool = True, save_optimizer: bool = True,
                 save_param_scheduler: bool = True, filename_tmpl: str = 'iter_{}.pth'):
        if by_epoch:
            raise ValueError('AtomicCheckpointHook saves by iteration: set '
                             'default_hooks.checkpoint.by_epoch=False.')
        if '{}' not in filename_tmpl:
            raise ValueError(f'AtomicCheckpointHook: filename_tmpl {filename_tmpl!r} needs a "{{}}" '
                             'for the iteration, e.g. "iter_{}.pth".')
        self.interval = int(interval)
        self.max_keep_ckpts = int(max_keep_ckpts)
        self.save_last = save_last
        self.save_optimizer = save_optimizer
        self.save_param_scheduler = save_param_scheduler
        self.filename_tmpl = filename_tmpl
        self.keep_ckpt_ids: list[int] = []

    def before_train(self, runner) -> None:
        # After --resume the message hub holds the kept ids of the checkpoint.
        self.keep_ckpt_ids = list(runner.message_hub.get_info('keep_ckpt_ids', []) or [])
        if is_main_process():
            # A process killed mid-save (a checkpoint, an embedding, the
            # pointer) could not remove its temporary file.
            for path in remove_stale_temps(runner.work_dir):
                runner.logger.info(f'Removed {path.name}, left by a killed run.')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # A run stopped early (LearningSignalHook) ends here: save it as the last.
        last = self.is_last_train_iter(runner) or getattr(runner.train_loop, 'stop_training', False)
        if self.every_n_train_iters(runner, self.interval) or (self.save_last and last):
            self.save(runner, runner.iter + 1)

    def save(self, runner, step: int) -> str:
        """Write the checkpoint of ``step``, point ``last_checkpoint`` at it,
        then drop checkpoints beyond ``max_keep_ckpts``. Returns its path."""
        path = os.path.join(runner.work_dir, self.filename_tmpl.format(step))
        keep, outdated = list(self.keep_ckpt_ids), []
        if self.max_keep_ckpts > 0:
            if step not in keep:
                keep.append(step)
            while len(keep) > self.max_keep_ckpts:
                outdated.append(keep.pop(0))
        hub = runner.message_hub
        previous = {key: hub.get_info(key) for key in ('keep_ckpt_ids', 'last_ckpt')}
        # The checkpoint records its own name and the kept ids, for resuming.
        if self.max_keep_ckpts > 0:
            hub.update_info('keep_ckpt_ids', list(keep))
        hub.update_info('last_ckpt', path)
        try:
            if is_main_process():  # runner.save_checkpoint writes on rank 0 only
                runner.logger.info(f'Saving checkpoint at {step} iterations')
                with atomic_write(path) as tmp:
                    runner.save_checkpoint(str(tmp.parent), tmp.name, by_epoch=False,
                                           save_optimizer=self.save_optimizer,
                                           save_param_scheduler=self.save_param_scheduler)
                with atomic_write(Path(runner.work_dir) / 'last_checkpoint') as tmp:
                    tmp.write_text(path)
        except BaseException:
            for key, value in previous.items():
                if value is not None:
                    hub.update_info(key, value)
            raise
        self.keep_ckpt_ids = keep
        if is_main_process():
            # Only now: the new checkpoint is whole, finite and pointed at.
            for old_step in outdated:
                Path(runner.work_dir, self.filename_tmpl.format(old_step)).unlink(missing_ok=True)
        return path

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not all_finite(checkpoint['state_dict'].values()):
            bad = [k for k, v in checkpoint['state_dict'].items() if not all_finite([v])]
            step = checkpoint['meta']['iter']
            raise NonFiniteLossError(stop_message(
                runner.work_dir, f'Not saving iteration {step}: {", ".join(bad)} hold NaN or '
                'inf', step - 1))
        checkpoint['message_hub'] = to_plain(checkpoint['message_hub'])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['message_hub'] = from_plain(checkpoint['message_hub'])
        use_configured_lr(runner, checkpoint)


def _lr_scheduler_states(states) -> list[dict]:
    if isinstance(states, dict):  # one list per optimizer
        states = [s for group in states.values() for s in group]
    return [s for s in states or [] if isinstance(s, dict) and s.get('param_name') == 'lr']


def use_configured_lr(runner, checkpoint: dict) -> None:
    """Resume with ``optim_wrapper.optimizer.lr`` of the config, not of the checkpoint.

    mmengine restores the optimizer's and the schedulers' learning rates from
    the checkpoint, so "lower the learning rate and --resume" after a
    divergence would silently train with the old one and diverge again. When
    the configured base lr differs from the one the checkpoint was trained
    with, every saved lr (groups and lr schedulers) is scaled by their ratio
    (set to the configured lr where the checkpoint's was 0); when it is the
    same, nothing changes and the resume stays bitwise exact.
    """
    try:
        wanted = float(runner.cfg.optim_wrapper.optimizer.lr)
        saved_cfg = Config.fromstring(checkpoint['meta']['cfg'], file_format='.py')
        saved = float(saved_cfg.optim_wrapper.optimizer.lr)
    except Exception:  # no config in the checkpoint or the runner: keep mmengine's way
        return
    if wanted == saved or 'optimizer' not in checkpoint:
        return
    # A run trained at lr 0 has no ratio to scale by: its rates become the configured one.
    new = (lambda value: wanted) if saved <= 0 else (lambda value: value * wanted / saved)
    for group in checkpoint['optimizer'].get('param_groups', []):
        for key in ('lr', 'initial_lr'):
            if key in group:
                group[key] = new(group[key])
    for state in _lr_scheduler_states(checkpoint.get('param_schedulers')):
        for key in ('base_values', '_last_value'):
            if isinstance(state.get(key), list):
                state[key] = [new(v) for v in state[key]]
    runner.logger.warning(f'Resuming with the learning rate of the config ({wanted:g}) instead '
                          f"of the checkpoint's ({saved:g}).")
