"""CurvesHook in a real run: curves.png at every checkpoint and at the end."""
from pathlib import Path

from mmengine.hooks import Hook
from PIL import Image

from mmti.engine.hooks.curves_hook import CURVES_FILE, logged_scalars, smooth
from mmti.evaluation.plot import PANEL_HEIGHT, line_chart, nice_ticks


class RecordCurves(Hook):
    """After every step (after all other hooks): the bytes of curves.png, if any."""

    priority = 'LOWEST'

    def __init__(self):
        self.files: dict[int, bytes | None] = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        path = Path(runner.work_dir) / CURVES_FILE
        self.files[runner.iter + 1] = path.read_bytes() if path.is_file() else None


def test_curves_follow_the_checkpoints_and_the_end(build_tiny_runner, tmp_path):
    runner, _ = build_tiny_runner(tmp_path, max_iters=4, checkpoint_interval=2,
                                  embedding_interval=0, validation_interval=None)
    record = RecordCurves()
    runner.register_hook(record)
    runner.train()
    files = record.files
    assert files[1] is None  # nothing before the first checkpoint
    assert files[2] is not None and files[3] == files[2]  # drawn at the checkpoint only
    assert files[4] != files[2]  # redrawn at the next one
    image = Image.open(tmp_path / CURVES_FILE)
    image.verify()  # a complete, valid PNG
    image = Image.open(tmp_path / CURVES_FILE)
    assert image.format == 'PNG' and image.width >= 600 and image.height >= PANEL_HEIGHT


def test_curves_that_cannot_be_written_do_not_stop_the_run(build_tiny_runner, tmp_path):
    (tmp_path / CURVES_FILE).mkdir()  # something in the way of the file
    runner, _ = build_tiny_runner(tmp_path, max_iters=4, checkpoint_interval=2,
                                  embedding_interval=0, validation_interval=None)
    runner.train()
    assert runner.iter == 4  # trained to the end
    assert (tmp_path / 'learned_embeds.safetensors').is_file()
    assert (tmp_path / 'iter_4.pth').is_file()
    log = next(Path(runner.log_dir).glob('*.log')).read_text()
    warning = f'Cannot write {tmp_path / CURVES_FILE} ('
    assert log.count(warning) == 1  # said once, not at every checkpoint
    assert 'training goes on without the curves' in log
    assert not list(tmp_path.glob('.curves*'))  # no temporary file left behind


def test_similarity_gets_a_panel(tmp_path):
    vis = tmp_path / 'vis_data'
    vis.mkdir()
    (vis / 'scalars.json').write_text('{"loss": 1.0, "step": 1}\n'
                                      '{"image_similarity": 0.5, "step": 10}\n'
                                      '{"image_similarity": 0.6, "step": 20}\n')
    series = logged_scalars(tmp_path)
    assert series['image_similarity'] == ([10, 20], [0.5, 0.6])
    one = line_chart([dict(title='loss', lines=[dict(x=[1, 2], y=[1.0, 0.9])])], tmp_path / 'a.png')
    two = line_chart([dict(title='loss', lines=[dict(x=[1, 2], y=[1.0, 0.9])]),
                      dict(title='similarity', lines=[dict(x=[10, 20], y=[0.5, 0.6])])],
                     tmp_path / 'b.png')
    assert Image.open(two).height == Image.open(one).height + PANEL_HEIGHT


def test_smoothing_and_ticks():
    assert smooth([2.0, 2.0, 2.0]) == [2.0, 2.0, 2.0]  # debiased: no pull towards 0
    assert nice_ticks(0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(1, 200) == [50, 100, 150, 200]
    ticks = nice_ticks(1.03, 1.21)
    assert ticks[0] >= 1.03 and ticks[-1] <= 1.21 and len(ticks) >= 3


def test_a_shared_range_puts_a_step_at_the_same_place_in_every_panel(tmp_path):
    import numpy as np
    from mmti.evaluation.plot import CHART_WIDTH, MARGIN_LEFT, MARGIN_RIGHT
    red = (214, 39, 40)
    panels = [dict(title='one point', xrange=(0, 10),
                   lines=[dict(label='', x=[2], y=[1.0], color=red)])]
    line_chart(panels, tmp_path / 'c.png')
    pixels = np.asarray(Image.open(tmp_path / 'c.png').convert('RGB'))
    columns = np.nonzero((pixels == red).all(axis=-1))[1]
    left, right = MARGIN_LEFT, CHART_WIDTH - MARGIN_RIGHT
    assert abs(columns.mean() - (left + 0.2 * (right - left))) <= 3  # step 2 of 0-10
