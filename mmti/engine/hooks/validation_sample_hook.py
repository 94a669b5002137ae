"""Render the validation prompts as a labelled PNG grid now and then during training."""
import math
from pathlib import Path

import numpy as np
from diffusers.utils import make_image_grid
from PIL import Image, ImageDraw, ImageFont

from mmti.fileio import atomic_write
from mmti.registry import HOOKS
from mmti.utils import NonFiniteRenderError
from .periodic_hook import PeriodicHook

MIN_CELL = 96  # px: smaller samples (tiny models) are enlarged to be seen
LABEL_HEIGHT = 18  # px of text band above each row


def labelled_grid(images: list[Image.Image], prompts: list[str], step: int) -> Image.Image:
    """One row per prompt (``len(images) // len(prompts)`` images each), the
    prompt written above its row and the step above the grid."""
    cols = len(images) // len(prompts)
    scale = max(1, math.ceil(MIN_CELL / max(1, images[0].height)))
    if scale > 1:  # nearest: enlarges pixels, invents nothing
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    cell_w, cell_h = images[0].size
    font = ImageFont.load_default(size=12)
    measure = ImageDraw.Draw(Image.new('RGB', (1, 1)))
    title = f'step {step}'
    width = max([cell_w * cols] + [int(measure.textlength(t, font=font)) + 8
                                   for t in [title, *prompts]])
    canvas = Image.new('RGB', (width, LABEL_HEIGHT + len(prompts) * (LABEL_HEIGHT + cell_h)),
                       'white')
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), title, fill='black', font=font)
    for row, prompt in enumerate(prompts):
        top = LABEL_HEIGHT + row * (LABEL_HEIGHT + cell_h)
        draw.text((4, top + 2), prompt, fill=(40, 40, 40), font=font)
        canvas.paste(make_image_grid(images[row * cols:(row + 1) * cols], rows=1, cols=cols),
                     (0, top + LABEL_HEIGHT))
    return canvas


@HOOKS.register_module()
class ValidationSampleHook(PeriodicHook):
    """Every ``interval`` steps (and at the end), sample the model's
    validation prompts into ``<work_dir>/samples/step_<N>.png`` (one row per
    prompt, labelled with it; the step above) and send the grid to the
    visualizer.

    Runs on rank 0 only; it uses a local random generator, so training noise
    is not disturbed, and the other ranks simply wait at the next all-reduce.
    The pipeline's own progress bar is off (the training bar is the one
    shown) unless the model's ``validation_cfg`` asks for it.

    Args:
        interval: Steps between renders; 0 or less renders only at the end.
        prompts: Overrides the model's ``validation_prompts``.
    """

    def __init__(self, interval: int = 500, prompts: list[str] | None = None):
        super().__init__(interval)
        self.prompts = prompts
        self.rendered_step: int | None = None  # the last step drawn

    def act(self, runner, model, step: int, final: bool) -> None:
        if final and step == self.rendered_step:
            return  # the interval already drew the last step: once is enough
        saved = getattr(model, 'validation_cfg', None)
        if isinstance(saved, dict):
            model.validation_cfg = {'show_progress': False, **saved}
        try:
            results = model.val_step({'prompts': self.prompts} if self.prompts else None)
        except NonFiniteRenderError as err:  # no grid of black images
            runner.logger.warning(f'Validation samples of step {step} not saved: {err}')
            return
        finally:
            if isinstance(saved, dict):
                model.validation_cfg = saved
        if not results:
            return
        prompts = list(dict.fromkeys(r['prompt'] for r in results))
        grid = labelled_grid([r['sample'] for r in results], prompts, step)
        path = sample_grid_path(runner.work_dir, step)
        with atomic_write(path) as tmp:
            grid.save(tmp, format='PNG')
        runner.visualizer.add_image('validation_samples', np.asarray(grid), step=step)
        self.rendered_step = step
        runner.logger.info(f'Saved validation samples ({len(prompts)} prompts) to {path}')


def sample_grid_path(work_dir, step: int) -> Path:
    """Where the grid of samples drawn at ``step`` goes."""
    return Path(work_dir) / 'samples' / f'step_{step}.png'
