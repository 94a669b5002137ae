"""Stop at the first NaN/inf loss instead of training on garbage."""
import math

from mmengine.hooks import Hook

from mmti.registry import HOOKS


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise with the iteration number when the loss is not finite.

    It runs before the saving hooks (higher priority), so neither
    ``learned_embeds.safetensors`` nor a checkpoint is ever overwritten with
    the poisoned rows: the last good files stay as they were.
    """

    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        loss = (outputs or {}).get('loss')
        if loss is None:
            return
        value = float(loss.detach()) if hasattr(loss, 'detach') else float(loss)
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f'Loss is {value} at iteration {runner.iter + 1}; training stopped and the '
                'files in the work dir were left as they were. Lower the learning rate, use '
                "dtype='fp32', or resume from the last checkpoint with --resume.")
