"""Render the validation prompts as a PNG grid now and then during training."""
from pathlib import Path

import numpy as np
from diffusers.utils import make_image_grid

from mmti.fileio import atomic_write
from mmti.registry import HOOKS
from .periodic_hook import PeriodicHook


@HOOKS.register_module()
class ValidationSampleHook(PeriodicHook):
    """Every ``interval`` steps (and at the end), sample the model's
    validation prompts into ``<work_dir>/samples/step_<N>.png`` (one row per
    prompt) and send the grid to the visualizer.

    Runs on rank 0 only; it uses a local random generator, so training noise
    is not disturbed, and the other ranks simply wait at the next all-reduce.

    Args:
        interval: Steps between renders; 0 or less renders only at the end.
        prompts: Overrides the model's ``validation_prompts``.
    """

    def __init__(self, interval: int = 500, prompts: list[str] | None = None):
        super().__init__(interval)
        self.prompts = prompts

    def act(self, runner, model, step: int, final: bool) -> None:
        results = model.val_step({'prompts': self.prompts} if self.prompts else None)
        if not results:
            return
        prompts = list(dict.fromkeys(r['prompt'] for r in results))
        grid = make_image_grid([r['sample'] for r in results], rows=len(prompts),
                               cols=len(results) // len(prompts))
        path = Path(runner.work_dir) / 'samples' / f'step_{step}.png'
        with atomic_write(path) as tmp:
            grid.save(tmp, format='PNG')
        runner.visualizer.add_image('validation_samples', np.asarray(grid), step=step)
        runner.logger.info(f'Saved validation samples for {prompts} to {path}')
