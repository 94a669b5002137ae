"""ValidationSampleHook in a real run: a labelled prompt-by-image grid, rendered off the global
RNG."""
import math
import random

import numpy as np
import torch
from PIL import Image

from mmti.engine import ValidationSampleHook
from mmti.engine.hooks.validation_sample_hook import LABEL_HEIGHT, MIN_CELL

SIZE = 64  # the tiny config's resolution
SCALE = math.ceil(MIN_CELL / SIZE)  # small samples are enlarged (nearest) to be seen
CELL = SIZE * SCALE


def row_top(row: int) -> int:
    """First pixel row of the images of ``row``: below the step line and the row's prompt."""
    return LABEL_HEIGHT + row * (LABEL_HEIGHT + CELL) + LABEL_HEIGHT


def cells(grid: Image.Image, rows: int, columns: int) -> list[list[np.ndarray]]:
    pixels = np.asarray(grid)
    return [[pixels[row_top(r):row_top(r) + CELL, c * CELL:(c + 1) * CELL] for c in range(columns)]
            for r in range(rows)]


def enlarged(sample: Image.Image) -> np.ndarray:
    return np.asarray(sample.resize((CELL, CELL), Image.NEAREST))


def test_grid_has_a_row_per_prompt_and_a_column_per_image(shared_run):
    prompts = shared_run.model.validation_prompts
    per_prompt = shared_run.settings['num_images_per_prompt']
    assert len(prompts) == 4 and per_prompt == 2
    # interval 0: rendered once, when training ends.
    assert sorted(p.name for p in (shared_run.work_dir / 'samples').iterdir()) == ['step_5.png']
    grid = Image.open(shared_run.work_dir / 'samples' / 'step_5.png')
    assert grid.format == 'PNG' and grid.mode == 'RGB'
    # Room for the labels: the step above the grid and each prompt above its row.
    assert grid.height == LABEL_HEIGHT + len(prompts) * (LABEL_HEIGHT + CELL)
    assert grid.height > len(prompts) * CELL
    assert grid.width >= per_prompt * CELL
    pixels = np.asarray(grid.convert('L'))
    for row in range(len(prompts)):  # text (dark pixels) in each row's label band
        assert pixels[row_top(row) - LABEL_HEIGHT:row_top(row)].min() < 128


def test_grid_goes_to_the_visualizer(shared_run):
    (sent,) = shared_run.work_dir.glob('*/vis_data/vis_image/validation_samples_5.png')
    grid = shared_run.work_dir / 'samples' / 'step_5.png'
    assert np.array_equal(np.asarray(Image.open(sent).convert('RGB')), np.asarray(Image.open(grid)))


def test_grid_cells_are_the_samples_in_prompt_order(shared_run):
    grid = Image.open(shared_run.work_dir / 'samples' / 'step_5.png')
    # The same seed (validation_cfg.seed=0) and the same final rows: the same images.
    results = shared_run.model.val_step()
    assert [r['prompt'] for r in results] == [
        p for p in shared_run.model.validation_prompts for _ in range(2)]
    grid_cells = cells(grid, 4, 2)
    for i, result in enumerate(results):
        assert np.array_equal(grid_cells[i // 2][i % 2], enlarged(result['sample']))
    # Every cell differs from the others, so the layout check above means something.
    flat = [c for row in grid_cells for c in row]
    assert all(not np.array_equal(a, b) for i, a in enumerate(flat) for b in flat[i + 1:])


def test_render_leaves_global_rng_untouched(shared_run, tmp_path, monkeypatch):
    runner = shared_run.runner
    monkeypatch.setattr(runner, '_work_dir', str(tmp_path))
    hook = ValidationSampleHook(interval=0, prompts=['a <cat-toy> on a sofa'])
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    torch_state, np_state, py_state = (torch.get_rng_state(), np.random.get_state(),
                                       random.getstate())
    hook.act(runner, runner.model, 99, final=False)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert random.getstate() == py_state
    # The prompts override gave one row of two images.
    grid = Image.open(tmp_path / 'samples' / 'step_99.png')
    assert grid.height == 2 * LABEL_HEIGHT + CELL and grid.width >= 2 * CELL
    assert shared_run.model.training  # back in training mode after sampling


def test_render_is_reproducible(shared_run, tmp_path, monkeypatch):
    runner = shared_run.runner
    hook = ValidationSampleHook(interval=0, prompts=['a <cat-toy> bag'])
    grids = []
    for name in ('a', 'b'):
        monkeypatch.setattr(runner, '_work_dir', str(tmp_path / name))
        torch.manual_seed(len(name) + ord(name))  # a different global state each time
        hook.act(runner, runner.model, 7, final=False)
        grids.append(np.asarray(Image.open(tmp_path / name / 'samples' / 'step_7.png')))
    assert np.array_equal(grids[0], grids[1])


def test_the_end_of_training_does_not_redraw_the_step_the_interval_drew(shared_run, tmp_path,
                                                                        monkeypatch):
    runner = shared_run.runner
    monkeypatch.setattr(runner, '_work_dir', str(tmp_path))
    hook = ValidationSampleHook(interval=0, prompts=['a <cat-toy> bag'])
    renders = []
    real_val_step = runner.model.val_step
    monkeypatch.setattr(runner.model, 'val_step', lambda *a: renders.append(a) or real_val_step(*a))
    hook.act(runner, runner.model, 6, final=False)  # the interval's render at the last step
    hook.act(runner, runner.model, 6, final=True)  # training ends at the same step
    assert len(renders) == 1
    assert [p.name for p in (tmp_path / 'samples').iterdir()] == ['step_6.png']
    hook.act(runner, runner.model, 8, final=True)  # an end between intervals is drawn
    assert len(renders) == 2 and (tmp_path / 'samples' / 'step_8.png').is_file()
