"""Faults injected into a real tools/train.py run through public hook points.

Imported by the fault matrix in-process, and by a training subprocess through
the config's ``custom_imports`` (with this folder on ``PYTHONPATH``).
"""
import time
from pathlib import Path

import torch
from mmengine.hooks import Hook

from mmti.registry import HOOKS


@HOOKS.register_module(force=True)
class SetTrainableRows(Hook):
    """After the optimizer update of iteration ``step``, fill every trainable
    parameter with ``value``: an update that overflowed although the loss it
    came from was finite. Runs before ``NonFiniteLossHook``."""

    priority = 'HIGH'

    def __init__(self, step: int, value: float = float('inf')):
        self.step = step
        self.value = float(value)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.step:
            with torch.no_grad():
                for group in runner.optim_wrapper.param_groups:
                    for param in group['params']:
                        param.fill_(self.value)


@HOOKS.register_module(force=True)
class StallCheckpointSave(Hook):
    """While the checkpoint of iteration ``step`` is being saved (its
    temporary file exists, nothing is renamed yet), create ``marker`` and
    sleep, so a test can SIGKILL the process mid-save. Only once: a resumed
    run finds the marker and saves normally."""

    def __init__(self, step: int, marker: str, seconds: float = 120.0):
        self.step = step
        self.marker = Path(marker)
        self.seconds = seconds

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint['meta']['iter'] == self.step and not self.marker.exists():
            self.marker.write_text(str(self.step))
            time.sleep(self.seconds)
