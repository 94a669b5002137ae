"""Log losses without a device-to-host sync every step."""
import torch
from mmengine.hooks import RuntimeInfoHook

from mmti.registry import HOOKS
from .sync_points import is_sync_point


@HOOKS.register_module()
class BatchedRuntimeInfoHook(RuntimeInfoHook):
    """Record losses in the message hub in batches instead of one by one.

    mmengine converts every step's loss with ``.item()``, which makes the host
    wait for the GPU each step. Here the detached loss tensors wait on the
    device and are read out together (one sync) at the next point where a
    hook actually looks at them (see :func:`is_sync_point`). The logged values
    are the same. Use it as ``default_hooks.runtime_info``; it changes only
    ``after_train_iter`` of mmengine's hook.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._pending: list[dict] = []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if outputs is not None:
            self._pending.append({k: v.detach() if isinstance(v, torch.Tensor) else v
                                  for k, v in outputs.items()})
        if is_sync_point(runner):
            self.flush(runner)

    def flush(self, runner) -> None:
        if not self._pending:
            return
        keys = [k for k, v in self._pending[0].items() if isinstance(v, torch.Tensor)]
        values = {k: torch.stack([p[k].float().reshape(()) for p in self._pending]).tolist()
                  for k in keys}
        for i, pending in enumerate(self._pending):
            for key, value in pending.items():
                runner.message_hub.update_scalar(f'train/{key}', values[key][i] if key in values else value)
        self._pending = []
