"""The shape shared by hooks that write something now and then: every
``interval`` steps and once more when training ends, on rank 0 only."""
from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper


def unwrap_model(model):
    """The model inside a DDP (or other mmengine) wrapper, or the model itself."""
    return model.module if is_model_wrapper(model) else model


class PeriodicHook(Hook):
    """Call :meth:`act` every ``interval`` steps and when training ends.

    Args:
        interval: Steps between calls; 0 or less calls only at the end.
    """

    priority = 'LOW'

    def __init__(self, interval: int = 0):
        self.interval = int(interval)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.interval > 0 and self.every_n_train_iters(runner, self.interval):
            self._act_on_main(runner, runner.iter + 1, final=False)

    def after_train(self, runner) -> None:
        self._act_on_main(runner, runner.iter, final=True)

    @master_only
    def _act_on_main(self, runner, step: int, final: bool) -> None:
        self.act(runner, unwrap_model(runner.model), step, final)

    def act(self, runner, model, step: int, final: bool) -> None:
        """Do the periodic work for ``step`` (``final`` when training ended)."""
        raise NotImplementedError
