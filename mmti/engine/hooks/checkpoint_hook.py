"""mmengine's CheckpointHook, made safe to kill and safe to load."""
import os
import os.path as osp

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook
from mmengine.logging import HistoryBuffer

from mmti.fileio import atomic_write
from mmti.registry import HOOKS

_BUFFER_TAG = '__mmti_history_buffer__'


def _to_plain(value):
    """numpy -> torch/python, HistoryBuffer -> tagged dict, recursively.

    mmengine pickles HistoryBuffer together with references to its methods
    (``getattr``) and numpy objects, which ``torch.load(weights_only=True)``
    rightly refuses; tensors and builtins load safely.
    """
    if isinstance(value, HistoryBuffer):
        log, count = value.data
        return {_BUFFER_TAG: True, 'max_length': value.max_length,
                'log': torch.from_numpy(np.asarray(log, dtype=np.float64)),
                'count': torch.from_numpy(np.asarray(count, dtype=np.int64))}
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((k, _to_plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_to_plain(v) for v in value)
    return value


def _from_plain(value):
    if isinstance(value, dict) and value.get(_BUFFER_TAG):
        return HistoryBuffer(value['log'].numpy().tolist(), value['count'].numpy().tolist(),
                             max_length=value['max_length'])
    if isinstance(value, dict):
        return type(value)((k, _from_plain(v)) for k, v in value.items())
    return value


@HOOKS.register_module()
class CheckpointHook(MMEngineCheckpointHook):
    """Checkpoints that survive a kill at any moment and load with
    ``torch.load(weights_only=True)`` (the torch >= 2.6 default).

    Compared with mmengine's hook: the checkpoint is written under a temporary
    name and renamed, ``last_checkpoint`` is replaced atomically and only after
    the rename, and an old checkpoint is deleted only after the new one exists.
    """

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['message_hub'] = _to_plain(checkpoint['message_hub'])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['message_hub'] = _from_plain(checkpoint['message_hub'])

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not osp.isdir(self.out_dir) and self.backend_args:
            return super()._save_checkpoint_with_step(runner, step, meta)  # remote storage
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        outdated = []
        if self.max_keep_ckpts > 0:
            # mmengine's deque has maxlen=max_keep_ckpts and would drop the oldest
            # id silently on append; take it out ourselves so its file is removed.
            if not self.keep_ckpt_ids or self.keep_ckpt_ids[-1] != step:
                if len(self.keep_ckpt_ids) >= self.max_keep_ckpts:
                    outdated.append(self.keep_ckpt_ids.popleft())
                self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        partial_name = f'.{ckpt_filename}.partial'
        partial = osp.join(self.out_dir, partial_name)
        try:
            runner.save_checkpoint(
                self.out_dir, partial_name, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
            if not is_main_process():
                return
            with open(partial, 'rb+') as f:
                os.fsync(f.fileno())
            os.replace(partial, self.last_ckpt)
        finally:
            if osp.exists(partial):
                os.remove(partial)
        with atomic_write(osp.join(runner.work_dir, 'last_checkpoint')) as tmp:
            tmp.write_text(self.last_ckpt)
        for old_step in outdated:
            old = osp.join(self.out_dir, self.filename_tmpl.format(old_step))
            if osp.isfile(old):
                os.remove(old)
