"""Export the trained model as a transformers folder while training runs."""
from pathlib import Path

from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmti.registry import HOOKS


@HOOKS.register_module()
class ExportHook(Hook):
    """Call ``model.<method>(work_dir/subdir)`` when training ends and, if
    ``interval > 0``, every ``interval`` iterations.

    The model's ``export`` writes atomically and replaces the previous export
    (e.g. :meth:`mmti.models.toy.ContrastiveCLIP.export`). Only rank 0 writes.

    Args:
        interval: Iterations between exports; 0 or less exports only at the end.
        subdir: Folder of the export, relative to the work dir.
        method: The model's export method, e.g. ``'export_text_encoder'``.
    """

    priority = 'LOW'

    def __init__(self, interval: int = 0, subdir: str = 'export', method: str = 'export'):
        self.interval = int(interval)
        self.subdir = subdir
        self.method = method

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.interval > 0 and self.every_n_train_iters(runner, self.interval):
            self._export(runner, runner.iter + 1)

    def after_train(self, runner) -> None:
        self._export(runner, runner.iter)

    @master_only
    def _export(self, runner, step: int) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        export = getattr(model, self.method, None)
        if export is None:
            raise TypeError(f'ExportHook: {type(model).__name__} has no {self.method}(path) method.')
        path = export(Path(runner.work_dir) / self.subdir)
        runner.logger.info(f'Exported the model at step {step} to {path}')
