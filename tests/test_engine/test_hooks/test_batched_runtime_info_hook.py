"""Losses are logged exactly, though read from the device only at sync points."""
import torch
from mmengine.hooks import Hook

from mmti.engine.hooks import BatchedRuntimeInfoHook, is_sync_point


class RecordLoss(Hook):
    priority = 'LOWEST'

    def __init__(self):
        self.losses, self.sync_points = [], []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append(float(outputs['loss']))
        self.sync_points.append(is_sync_point(runner))


def test_deferred_losses_match_every_step(build_tiny_runner, tmp_path):
    runner, _ = build_tiny_runner(tmp_path, max_iters=7, checkpoint_interval=3,
                                  embedding_interval=0, validation_interval=None)
    runner.cfg.default_hooks.logger.interval = 3
    for hook in runner.hooks:
        if type(hook).__name__ == 'LoggerHook':
            hook.interval = 3
    recorder = RecordLoss()
    runner.register_hook(recorder)
    assert any(isinstance(h, BatchedRuntimeInfoHook) for h in runner.hooks)  # the config's runtime_info
    runner.train()
    assert recorder.sync_points == [False, False, True, False, False, True, True]
    history, counts = runner.message_hub.get_scalar('train/loss').data
    assert history.tolist() == recorder.losses and counts.tolist() == [1] * 7
    assert torch.isfinite(torch.tensor(history)).all()
