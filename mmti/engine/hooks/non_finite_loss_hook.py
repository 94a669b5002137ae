"""Stop at the first NaN/inf loss instead of training on garbage."""
import torch
from mmengine.hooks import Hook

from mmti.registry import HOOKS
from .sync_points import is_sync_point


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise, naming the first bad iteration, when the loss is not finite.

    The check costs no per-step sync: the first bad iteration is tracked on
    the device and read out only where something would be saved or logged
    (:func:`is_sync_point`). Its priority puts it before every saving hook,
    so neither ``learned_embeds*.safetensors`` nor a checkpoint is ever
    written from poisoned rows: the last good files stay as they were.
    """

    priority = 'ABOVE_NORMAL'

    def before_train(self, runner) -> None:
        self._first_bad_step = None
        self._first_bad_value = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        loss = (outputs or {}).get('loss')
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().float().reshape(())
            if self._first_bad_step is None:
                self._first_bad_step = torch.zeros((), dtype=torch.long, device=loss.device)
                self._first_bad_value = torch.zeros((), device=loss.device)
            new = ~torch.isfinite(loss) & (self._first_bad_step == 0)
            # torch.full, not torch.tensor: no host-to-device copy to wait for.
            step = torch.full((), runner.iter + 1, dtype=torch.long, device=loss.device)
            self._first_bad_step = torch.where(new, step, self._first_bad_step)
            self._first_bad_value = torch.where(new, loss, self._first_bad_value)
        if self._first_bad_step is not None and is_sync_point(runner):
            self.check()

    def check(self) -> None:
        step = int(self._first_bad_step)
        if step:
            raise NonFiniteLossError(
                f'Loss is {float(self._first_bad_value)} at iteration {step}; training stopped '
                'and the files in the work dir were left as they were. Lower the learning rate, '
                "use dtype='fp32', or resume from the last checkpoint with --resume.")
