"""Export the trained model as a transformers folder while training runs."""
from pathlib import Path

from mmti.registry import HOOKS
from .periodic_hook import PeriodicHook


@HOOKS.register_module()
class ExportHook(PeriodicHook):
    """Call ``model.<method>(work_dir/subdir)`` when training ends and, if
    ``interval > 0``, every ``interval`` iterations.

    The model's ``export`` writes atomically and replaces the previous export
    (e.g. :meth:`projects.toy_world.models.ContrastiveCLIP.export`). Only rank 0 writes.

    Args:
        interval: Iterations between exports; 0 or less exports only at the end.
        subdir: Folder of the export, relative to the work dir.
        method: The model's export method, e.g. ``'export_text_encoder'``.
    """

    def __init__(self, interval: int = 0, subdir: str = 'export', method: str = 'export'):
        super().__init__(interval)
        self.subdir = subdir
        self.method = method

    def act(self, runner, model, step: int, final: bool) -> None:
        export = getattr(model, self.method, None)
        if export is None:
            raise TypeError(f'ExportHook: {type(model).__name__} has no {self.method}(path) method.')
        path = export(Path(runner.work_dir) / self.subdir)
        runner.logger.info(f'Exported the model at step {step} to {path}')
