"""SimilarityCurveHook in real tiny runs: with an evaluation block it measures
the concept at the start, every interval and at the end, without changing
training; curves.png gets the two panels; a resumed run continues the series."""
import json
from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook
from mmti_testing import CAT_TOY, save_tiny_clip
from PIL import Image

from mmti.engine.hooks.curves_hook import CURVES_FILE, similarity_panels
from mmti.engine.hooks.similarity_curve_hook import SIMILARITY_FILE, read_similarity
from mmti.evaluation.plot import PANEL_HEIGHT


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp('clip'))


def run(work_dir, clip=None, max_iters=4, resume=False, hooks=()):
    """Tiny runs, a checkpoint every step; ``clip`` adds an evaluation block."""
    from conftest import tiny_config, train
    cfg = tiny_config(work_dir, max_iters=max_iters, checkpoint_interval=1, embedding_interval=0,
                      validation_interval=None, batch_size=2)
    cfg.default_hooks.learning_signal.interval = 2
    cfg.default_hooks.learning_signal.num_samples = 2
    cfg.default_hooks.similarity.interval = 2
    cfg.default_hooks.similarity.overrides = dict(num_samples=1, steps=2, size=32)
    if clip is not None:
        cfg.evaluation = dict(clip=str(clip), held_out_dir=str(CAT_TOY), guidance_scale=1.5,
                              edit_prompts=['a {} on a table', 'a small {}'])
    return train(cfg, resume, hooks)


@pytest.fixture(scope='module')
def measured(tmp_path_factory, clip):
    work_dir = tmp_path_factory.mktemp('measured')
    return work_dir, *run(work_dir, clip)


def test_measures_at_the_start_every_interval_and_the_end(measured):
    work_dir, runner, _ = measured
    series = read_similarity(work_dir)
    assert [point['step'] for point in series] == [0, 2, 4]
    for point in series:
        assert 0 < point['image_similarity'] <= 1 and 0 < point['text_similarity'] <= 1
        # gap closed and text ratio are the learned row's against the baselines
        gap = ((point['image_similarity'] - point['initializer_image_similarity'])
               / (point['image_only_image_similarity'] - point['initializer_image_similarity']))
        assert point['gap_closed'] == pytest.approx(gap)
        assert point['text_ratio'] == pytest.approx(
            point['text_similarity'] / point['initializer_text_similarity'])
    # The baselines come from the frozen model and the images: measured once.
    for key in ('initializer_image_similarity', 'initializer_text_similarity',
                'image_only_image_similarity'):
        assert len({point[key] for point in series}) == 1, key
    # The rows moved, so the learned row's numbers did too.
    assert len({point['image_similarity'] for point in series}) > 1


def test_curves_png_has_the_two_similarity_panels(measured):
    work_dir, _, _ = measured
    panels = similarity_panels(read_similarity(work_dir))
    last = read_similarity(work_dir)[-1]
    assert [p['title'] for p in panels] == [
        f"image similarity (CLIP): {last['gap_closed']:.0%} of the gap closed at step 4",
        f"text similarity (CLIP): {last['text_ratio']:.0%} of the initializer's at step 4"]
    assert [line['label'] for line in panels[0]['lines']] == ['learned', 'initializer word',
                                                             'held-out images']
    image = Image.open(work_dir / CURVES_FILE)
    # loss, learning signal, image similarity, text similarity (and a title line)
    assert 4 * PANEL_HEIGHT <= image.height < 5 * PANEL_HEIGHT


def test_measuring_does_not_change_training(measured, tmp_path):
    work_dir, _, measured_rows = measured
    _, plain = run(tmp_path / 'plain')  # no evaluation block: the hook does nothing
    assert not (tmp_path / 'plain' / SIMILARITY_FILE).exists()
    for step, rows in measured_rows.rows.items():
        assert torch.equal(rows, plain.rows[step]), step


def test_a_resumed_run_continues_the_series(measured, clip, tmp_path):
    from conftest import Interrupt
    work_dir, _, _ = measured
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, clip, hooks=[Interrupt(3)])
    assert [p['step'] for p in read_similarity(tmp_path)] == [0, 2]
    run(tmp_path, clip, resume=True)
    assert read_similarity(tmp_path) == read_similarity(work_dir)


def test_a_resume_from_an_earlier_checkpoint_drops_the_later_points_at_once(measured, clip,
                                                                            tmp_path):
    import shutil
    work_dir, _, _ = measured
    copy = tmp_path / 'copy'
    shutil.copytree(work_dir, copy)
    (copy / 'last_checkpoint').write_text(str(copy / 'iter_3.pth'))

    class SeriesOnDisk(Hook):
        priority = 'LOWEST'
        first = None

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if self.first is None:
                self.first = [p['step'] for p in read_similarity(runner.work_dir)]

    seen = SeriesOnDisk()
    run(copy, clip, resume=True, hooks=[seen])
    # Before step 4 is trained, the file (and any curves drawn from it) ends at step 2,
    # not at the abandoned run's step 4.
    assert seen.first == [0, 2]
    assert read_similarity(copy) == read_similarity(work_dir)


def test_a_weights_only_load_starts_a_fresh_series(measured, clip, tmp_path):
    from conftest import tiny_config, train
    work_dir, _, _ = measured
    cfg = tiny_config(tmp_path, max_iters=2, checkpoint_interval=1, embedding_interval=0,
                      validation_interval=None, batch_size=2)
    cfg.default_hooks.learning_signal.interval = 2
    cfg.default_hooks.learning_signal.num_samples = 2
    cfg.default_hooks.similarity.interval = 2
    cfg.default_hooks.similarity.overrides = dict(num_samples=1, steps=2, size=32)
    cfg.evaluation = dict(clip=str(clip), held_out_dir=str(CAT_TOY), guidance_scale=1.5,
                          edit_prompts=['a {} on a table', 'a small {}'])
    cfg.load_from = str(work_dir / 'iter_4.pth')
    train(cfg)
    series = read_similarity(tmp_path)
    assert [p['step'] for p in series] == [0, 2]
    # Step 0 is the loaded rows: the measured run's last point, measured again.
    assert series[0]['image_similarity'] == pytest.approx(
        read_similarity(work_dir)[-1]['image_similarity'], rel=1e-5)


def test_final_numbers_are_logged(tmp_path, clip):
    runner, _ = run(tmp_path, clip, max_iters=1)
    series = json.loads((tmp_path / SIMILARITY_FILE).read_text())['series']
    assert [p['step'] for p in series] == [0, 1]
    log = next(Path(runner.log_dir).glob('*.log')).read_text()
    assert f'Similarity at step 1: image similarity {series[-1]["image_similarity"]:.4f}' in log


def test_a_missing_held_out_folder_is_named_before_training(tmp_path, clip):
    from conftest import tiny_config, train
    cfg = tiny_config(tmp_path, max_iters=2, checkpoint_interval=1, embedding_interval=0,
                      validation_interval=None, batch_size=2)
    cfg.evaluation = dict(clip=str(clip), held_out_dir=str(tmp_path / 'nowhere'))
    with pytest.raises(ValueError, match=r'evaluation.held_out_dir .*nowhere is not a folder.*'
                                         r'default_hooks.similarity=None'):
        train(cfg)
    assert not list(tmp_path.glob('*.pth'))  # refused before the first step


def test_held_out_images_beside_the_training_folder_follow_the_concept(tmp_path, clip):
    # A config meant for one concept, trained on another folder: '{data_root}'
    # measures against that concept's own held-out images, not the config's.
    import shutil

    from conftest import tiny_config, train
    for split in ('train', 'held_out'):
        shutil.copytree(CAT_TOY, tmp_path / 'mug' / split)
    cfg = tiny_config(tmp_path / 'work', max_iters=1, checkpoint_interval=1, embedding_interval=0,
                      validation_interval=None, batch_size=2)
    cfg.default_hooks.similarity.overrides = dict(num_samples=1, steps=2, size=32)
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'mug' / 'train')
    cfg.evaluation = dict(clip=str(clip), held_out_dir='{data_root}/../held_out')
    runner, _ = train(cfg)
    log = next(Path(runner.log_dir).glob('*.log')).read_text()
    assert f'against the held-out images in {tmp_path / "mug" / "held_out"};' in log


def test_renders_that_are_not_finite_are_not_measured(tmp_path, clip):
    from mmti.engine import NonFiniteLossError

    class Blowup(Hook):  # after the non-finite check of step 2, before the measurement
        priority = 'NORMAL'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == 2:
                with torch.no_grad():
                    runner.model.token_embedding.concept_rows('<cat-toy>').fill_(3e38)

    with pytest.raises(NonFiniteLossError):  # the next step's loss ends the run
        run(tmp_path, clip, hooks=[Blowup()])
    assert [p['step'] for p in read_similarity(tmp_path)] == [0]  # no number from black images
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'Similarity at step 2 not measured: The renders of' in log


@pytest.mark.parametrize('setting, message', [
    (dict(guidance_scale=float('nan')), r'default_hooks.similarity: guidance_scale \(evaluation'
                                        r'.guidance_scale, or its override\) is nan; it must be a '
                                        r'finite number'),
    (dict(num_samples=0), r'default_hooks.similarity: num_samples \(evaluation.num_samples, or '
                          r'its override\) is 0; it must be a whole number of at least 1'),
    (dict(steps=0), r'default_hooks.similarity: steps .* is 0'),
])
def test_bad_protocol_numbers_name_the_setting(tmp_path, clip, setting, message):
    from conftest import tiny_config, train
    cfg = tiny_config(tmp_path, max_iters=2, checkpoint_interval=1, embedding_interval=0,
                      validation_interval=None, batch_size=2)
    cfg.evaluation = dict(clip=str(clip), held_out_dir=str(CAT_TOY), **setting)
    cfg.default_hooks.similarity.overrides = dict(setting)  # an override is checked as well
    with pytest.raises(ValueError, match=message):
        train(cfg)


def test_a_held_out_folder_without_images_names_the_config_key(tmp_path, clip):
    from conftest import tiny_config, train
    from mmti.utils import UserError
    empty = tmp_path / 'held'
    empty.mkdir()
    (empty / 'notes.txt').write_text('not an image')
    cfg = tiny_config(tmp_path / 'work', max_iters=2, checkpoint_interval=1,
                      embedding_interval=0, validation_interval=None, batch_size=2)
    cfg.evaluation = dict(clip=str(clip), held_out_dir=str(empty))
    with pytest.raises(UserError, match=r'^default_hooks.similarity: the held-out folder of '
                                        r'<cat-toy> \(evaluation.held_out_dir, or held_out_dir in '
                                        r'its concept\): .*has no images'):
        train(cfg)
