"""LearningSignalHook in real tiny runs: it measures without changing training,
stops where its rule says, and a resumed run stops at the same step."""
import json

import pytest
import torch

from mmti.engine.hooks.learning_signal_hook import SIGNAL_FILE
from mmti.engine.learning_signal import FixedBatchLoss
from mmti.engine.resume import RunFinished, check_not_finished
from mmti.engine.stop_rules import PlateauStop
from mmti.fileio.embedding_file import read_embedding_file


def signal_cfg(cfg, interval=1, stop=None):
    cfg.default_hooks.learning_signal.interval = interval
    cfg.default_hooks.learning_signal.num_samples = 4
    cfg.default_hooks.learning_signal.stop = stop
    return cfg


def run(work_dir, stop=None, max_iters=6, resume=False, hooks=(), **kwargs):
    from conftest import tiny_config, train
    cfg = signal_cfg(tiny_config(work_dir, max_iters=max_iters, checkpoint_interval=1,
                                 embedding_interval=0, validation_interval=None, batch_size=2),
                     stop=stop, **kwargs)
    return train(cfg, resume, hooks)


def test_measuring_does_not_change_training(tmp_path):
    from conftest import RecordRows, tiny_config
    from mmti.engine import build_runner
    _, with_signal = run(tmp_path / 'on', max_iters=4)
    cfg = tiny_config(tmp_path / 'off', max_iters=4, checkpoint_interval=1, embedding_interval=0,
                      validation_interval=None, batch_size=2)
    cfg.default_hooks.learning_signal = None
    runner = build_runner(cfg)
    assert not any(type(h).__name__ == 'LearningSignalHook' for h in runner.hooks)
    without = RecordRows()
    runner.register_hook(without)
    runner.train()
    for step in range(1, 5):
        assert torch.equal(with_signal.rows[step], without.rows[step])
    series = json.loads((tmp_path / 'on' / SIGNAL_FILE).read_text())
    assert series['steps'] == [0, 1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(series['values'])))
    assert series['stopped'] is None and series['rule'] is None
    log = next((tmp_path / 'on').glob('*/*.log')).read_text()
    assert f"learning_signal: {series['values'][-1]:.4f}" in log


def test_signal_is_a_function_of_the_rows_alone(tmp_path):
    from mmti_testing import build_tiny_model, CAT_TOY
    from mmengine.dataset import pseudo_collate
    from mmti.registry import DATASETS
    import mmti.datasets  # noqa: F401
    dataset = DATASETS.build(dict(type='TextualInversionDataset', data_root=str(CAT_TOY),
                                  placeholder_token='<cat-toy>', resolution=32))
    model = build_tiny_model()
    signal = FixedBatchLoss(dataset, pseudo_collate, num_samples=3, seed=0, batch_size=2)
    assert signal.num_samples == len(dataset.images)  # whole passes over the images
    state = torch.random.get_rng_state()
    first = signal(model)
    assert torch.equal(state, torch.random.get_rng_state())  # draws nothing from torch's RNG
    assert signal(model) == first
    same_draw = FixedBatchLoss(dataset, pseudo_collate, num_samples=3, seed=0, batch_size=5)
    assert same_draw(model) == pytest.approx(first, rel=1e-5)  # batching is memory, not result
    with torch.no_grad():
        model.token_embedding.concept_rows('<cat-toy>').add_(0.5)
    assert signal(model) != first
    other_seed = FixedBatchLoss(dataset, pseudo_collate, num_samples=3, seed=1, batch_size=2)
    assert other_seed(model) != signal(model)


def test_signal_measures_the_timesteps_training_uses():
    from mmti_testing import build_tiny_model, CAT_TOY, unet_timesteps_seen
    from mmengine.dataset import pseudo_collate
    from mmti.registry import DATASETS
    import mmti.datasets  # noqa: F401
    dataset = DATASETS.build(dict(type='TextualInversionDataset', data_root=str(CAT_TOY),
                                  placeholder_token='<cat-toy>', resolution=32))
    signal = FixedBatchLoss(dataset, pseudo_collate, num_samples=16, seed=0, batch_size=8)
    for bounds in ((0, 100), (900, 1000)):
        model = build_tiny_model(train_timesteps=bounds)
        with unet_timesteps_seen(model) as seen:
            signal(model)
        timesteps = torch.cat(seen)
        assert len(timesteps) == signal.num_samples
        assert bounds[0] <= timesteps.min() and timesteps.max() < bounds[1], (bounds, timesteps)


def test_stops_where_the_rule_says_and_resume_stops_there_too(tmp_path):
    stop = dict(window=2, min_drop=0.5)
    runner, whole = run(tmp_path / 'whole', stop=stop, max_iters=30)
    series = json.loads((tmp_path / 'whole' / SIGNAL_FILE).read_text())
    rule = PlateauStop(**stop)
    expected = next(series['steps'][n - 1] for n in range(1, len(series['steps']) + 1)
                    if rule.reason_to_stop(series['steps'][:n], series['values'][:n]))
    step = series['stopped']['step']
    assert step == expected == runner.iter < 30
    assert max(whole.rows) == step
    assert 'learning signal' in series['stopped']['reason']
    # The stop is saved as a finished run: checkpoint, pointer, final embedding.
    work = tmp_path / 'whole'
    assert (work / 'last_checkpoint').read_text().strip().endswith(f'iter_{step}.pth')
    final = read_embedding_file(str(work / 'learned_embeds.safetensors'))
    assert final.step == step  # written from the stop step's rows
    checkpoint = torch.load(work / f'iter_{step}.pth', weights_only=True)
    assert checkpoint['learning_signal']['stopped']['step'] == step
    with pytest.raises(RunFinished, match='nothing to resume'):
        check_not_finished(runner.cfg, str(work / f'iter_{step}.pth'), checkpoint)

    # Interrupted before the stop, then resumed: same stop, same rows, same series.
    from conftest import Interrupt
    broken = tmp_path / 'resumed'
    with pytest.raises(KeyboardInterrupt):
        run(broken, stop=stop, max_iters=30, hooks=[Interrupt(step - 1)])
    resumed, after = run(broken, stop=stop, max_iters=30, resume=True)
    assert resumed.iter == step
    assert torch.equal(after.rows[step], whole.rows[step])
    again = json.loads((broken / SIGNAL_FILE).read_text())
    assert again['steps'] == series['steps'] and again['values'] == series['values']
    assert again['moved'] == series['moved'] and len(series['moved']) == len(series['steps'])
    assert series['moved'][0] == 0.0 and min(series['moved'][1:]) > 0
    assert again['stopped'] == series['stopped']
    assert (broken / 'learned_embeds.safetensors').read_bytes() == (
        work / 'learned_embeds.safetensors').read_bytes()


def test_bad_interval_is_refused():
    from mmti.engine.hooks import LearningSignalHook
    with pytest.raises(ValueError, match='interval'):
        LearningSignalHook(interval=0)
    with pytest.raises(ValueError, match='stop.window'):
        LearningSignalHook(stop=dict(window=0))


def test_rows_that_do_not_learn_end_the_run_with_nothing_saved_as_learned(tmp_path):
    from mmti.engine.hooks.learning_signal_hook import NotLearningError
    from mmti.utils import UserError
    # A learning rate of 0: the rows never move, the signal never falls below its start.
    with pytest.raises(NotLearningError, match=r'Stopped at step 4: the learning signal has '
                                                r'stayed at or above its start .*learning rate 0\)'
                                                r'.*Fix: set optim_wrapper.optimizer.lr') as err:
        _run_with_lr(tmp_path, lr=0.0, stop=dict(window=2), max_iters=12)
    assert isinstance(err.value, UserError)  # tools/train.py: one line, exit status 2
    assert not (tmp_path / 'learned_embeds.safetensors').exists()
    series = json.loads((tmp_path / SIGNAL_FILE).read_text())
    assert series['steps'] == [0, 1, 2, 3, 4] and series['stopped'] is None
    assert len(set(series['values'])) == 1


def test_a_checkpoint_without_starting_rows_resumes_on_the_signal_alone(tmp_path):
    # Checkpoints written before the rows' distance was tracked carry no starting rows.
    from conftest import Interrupt
    stop = dict(window=2, min_drop=0.5)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, stop=stop, max_iters=30, hooks=[Interrupt(3)])
    for path in tmp_path.glob('iter_*.pth'):
        checkpoint = torch.load(path, weights_only=True)
        del checkpoint['learning_signal_start_rows']
        del checkpoint['learning_signal']['moved']
        torch.save(checkpoint, path)
    resumed, _ = run(tmp_path, stop=stop, max_iters=30, resume=True)
    series = json.loads((tmp_path / SIGNAL_FILE).read_text())
    assert series['moved'] == [] and series['stopped']['step'] == resumed.iter < 30


def test_rows_too_slow_to_move_end_the_run_although_the_signal_falls(tmp_path):
    from mmti.engine.hooks.learning_signal_hook import NotLearningError
    # On the random tiny model lr 1e-4 moves the rows by about a hundredth of a
    # word's size in 4 steps while the signal falls by a hair; min_move=0.1
    # calls that too slow (the default, 0.01, is for real models' rows:
    # docs/fast_concepts.md).
    with pytest.raises(NotLearningError, match=r'Stopped at step 4: in 4 steps the rows have moved '
                                                r"0\.0\d+ of a word's size \(under "
                                                r'stop.min_move=0.1; 0 turns this check off\).*'
                                                r'learning rate 0.0001\)'):
        _run_with_lr(tmp_path, lr=1e-4, stop=dict(window=2, min_move=0.1), max_iters=12)
    assert not (tmp_path / 'learned_embeds.safetensors').exists()
    series = json.loads((tmp_path / SIGNAL_FILE).read_text())
    assert min(series['values'][1:]) < series['values'][0]  # the signal alone said "learning"
    assert series['steps'] == [0, 1, 2, 3, 4] and series['moved'][0] == 0.0
    assert 0 < series['moved'][1] < series['moved'][-1] < 0.1


def test_rows_started_from_zeros_are_judged_by_a_words_size(tmp_path):
    from mmti.engine.hooks.learning_signal_hook import NotLearningError
    from mmti.fileio import write_embedding_file
    # Measured against their own starting size, zero rows would have moved
    # "infinitely far" after any step and never been judged.
    zeros = write_embedding_file(tmp_path / 'zeros.safetensors', {'<z>': torch.zeros(1, 32)})
    with pytest.raises(NotLearningError, match=r"in 4 steps the rows have moved 0\.0\d+ of a "
                                                r"word's size"):
        _run_with_lr(tmp_path / 'run', lr=1e-4, stop=dict(window=2, min_move=0.1), max_iters=12,
                     model=dict(initial_embedding=str(zeros), initializer_token=None))
    series = json.loads((tmp_path / 'run' / SIGNAL_FILE).read_text())
    assert series['moved'][0] == 0.0 and 0 < series['moved'][-1] < 0.1


def _run_with_lr(work_dir, lr, stop, max_iters, model=None):
    from conftest import tiny_config, train
    cfg = signal_cfg(tiny_config(work_dir, max_iters=max_iters, checkpoint_interval=1,
                                 embedding_interval=0, validation_interval=None, batch_size=2),
                     stop=stop)
    cfg.optim_wrapper.optimizer.lr = lr
    cfg.model.update(model or {})
    return train(cfg)


@pytest.fixture(scope='module')
def stopped_run(tmp_path_factory):
    """A run the rule stops (interval 1, window 2), and its series."""
    work = tmp_path_factory.mktemp('stopped')
    runner, recorder = run(work, stop=dict(window=2, min_drop=0.5), max_iters=30)
    series = json.loads((work / SIGNAL_FILE).read_text())
    assert series['stopped']['step'] == runner.iter < 30
    return work, runner, recorder, series


def test_a_stopped_run_cut_off_before_its_outputs_writes_them_on_resume(stopped_run, tmp_path):
    import shutil
    work, runner, _, series = stopped_run
    step = series['stopped']['step']
    copy = tmp_path / 'copy'
    shutil.copytree(work, copy)
    # What a kill after the stop step's checkpoint and before the end leaves: no final file.
    (copy / 'learned_embeds.safetensors').unlink()
    checkpoint = torch.load(copy / f'iter_{step}.pth', weights_only=True)
    cfg = runner.cfg.copy()
    cfg.work_dir = str(copy)
    assert 'writing its outputs now, without training' in check_not_finished(
        cfg, str(copy / f'iter_{step}.pth'), checkpoint)
    resumed, recorder = run(copy, stop=dict(window=2, min_drop=0.5), max_iters=30, resume=True)
    assert resumed.iter == step and not recorder.rows  # not one step trained
    assert (copy / 'learned_embeds.safetensors').read_bytes() == (
        work / 'learned_embeds.safetensors').read_bytes()
    assert json.loads((copy / SIGNAL_FILE).read_text()) == series
    # Now whole: a second --resume has nothing to do.
    with pytest.raises(RunFinished, match=f'nothing to resume: the run finished at step {step}'):
        check_not_finished(cfg, str(copy / f'iter_{step}.pth'), checkpoint)
    # A final file of another step (an earlier end, then a longer run cut off) is not whole.
    snapshot = read_embedding_file(str(copy / 'learned_embeds.safetensors'))
    from mmti.fileio import write_embedding_file
    write_embedding_file(str(copy / 'learned_embeds.safetensors'), snapshot.embeddings,
                         step=step - 1)
    assert check_not_finished(cfg, str(copy / f'iter_{step}.pth'), checkpoint) is not None


def test_resuming_a_stopped_run_says_how_to_train_on_and_does(stopped_run, tmp_path):
    import shutil
    work, runner, recorder, series = stopped_run
    step = series['stopped']['step']
    checkpoint = torch.load(work / f'iter_{step}.pth', weights_only=True)
    with pytest.raises(RunFinished) as done:
        check_not_finished(runner.cfg, str(work / f'iter_{step}.pth'), checkpoint)
    assert 'default_hooks.learning_signal.stop=None' in done.value.hint
    assert 'max_iters' not in done.value.hint  # raising it would not help
    copy = tmp_path / 'copy'
    shutil.copytree(work, copy)
    on, after = run(copy, stop=None, max_iters=step + 3, resume=True)
    assert on.iter == step + 3 and sorted(after.rows) == [step + 1, step + 2, step + 3]
    again = json.loads((copy / SIGNAL_FILE).read_text())
    assert again['stopped'] is None and again['rule'] is None
    assert again['steps'] == series['steps'] + [step + 1, step + 2, step + 3]
    assert read_embedding_file(str(copy / 'learned_embeds.safetensors')).step == step + 3


def test_a_weights_only_load_starts_a_fresh_series(stopped_run, tmp_path):
    from conftest import tiny_config, train
    work, _, _, series = stopped_run
    step = series['stopped']['step']
    cfg = signal_cfg(tiny_config(tmp_path, max_iters=3, checkpoint_interval=1,
                                 embedding_interval=0, validation_interval=None, batch_size=2),
                     stop=dict(window=2, min_drop=0.5))
    cfg.load_from = str(work / f'iter_{step}.pth')  # the stopped rows, as a starting point
    runner, recorder = train(cfg)
    assert runner.iter == 3 and sorted(recorder.rows) == [1, 2, 3]
    fresh = json.loads((tmp_path / SIGNAL_FILE).read_text())
    assert fresh['steps'] == [0, 1, 2, 3] and fresh['stopped'] is None
    # It starts from the loaded rows: its first value is the stopped run's last.
    assert fresh['values'][0] == pytest.approx(series['values'][-1], rel=1e-6)


def test_resume_refuses_a_signal_of_other_samples(stopped_run, tmp_path):
    import shutil
    from mmti.utils import UserError
    work, _, _, series = stopped_run
    copy = tmp_path / 'copy'
    shutil.copytree(work, copy)
    (copy / 'last_checkpoint').write_text(str(copy / 'iter_2.pth'))
    from conftest import tiny_config, train
    cfg = signal_cfg(tiny_config(copy, max_iters=30, checkpoint_interval=1, embedding_interval=0,
                                 validation_interval=None, batch_size=2),
                     stop=dict(window=2, min_drop=0.5))
    cfg.default_hooks.learning_signal.num_samples = 8
    with pytest.raises(UserError, match=r'it measured the learning signal with num_samples=4, '
                                        r'this config with 8.*learning_signal.num_samples=4\.'):
        train(cfg, resume=True)
    # Another interval would join two spacings into one series: the stop would
    # come at a step no single run reaches.
    cfg.default_hooks.learning_signal.num_samples = 4
    cfg.default_hooks.learning_signal.interval = 2
    with pytest.raises(UserError, match=r'with interval=1, this config with 2.*--cfg-options '
                                        r'default_hooks.learning_signal.interval=1\.'):
        train(cfg, resume=True)


def test_a_cap_before_the_first_possible_stop_is_a_warning(tmp_path):
    run(tmp_path, stop=dict(window=4), max_iters=5)
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert ('default_hooks.learning_signal.stop can first stop at step 8 (two windows of 4 steps, '
            'measured every 1), after train_cfg.max_iters=5') in log


@pytest.mark.parametrize('kwargs, message', [
    (dict(interval=2.5), 'learning_signal.interval must be a whole number >= 1, got 2.5'),
    (dict(num_samples=0.5), 'learning_signal.num_samples must be a whole number >= 1, got 0.5'),
    (dict(batch_size=-1), 'learning_signal.batch_size must be a whole number >= 1, got -1'),
    (dict(batch_size='a'), "learning_signal.batch_size must be a whole number >= 1, got 'a'"),
    (dict(interval=10, stop=dict(window=5)), r'learning_signal.stop.window \(5\) is shorter'),
    (dict(stop=dict(windw=20)), r"learning_signal.stop has unknown keys \['windw'\]"),
])
def test_bad_settings_name_the_setting(kwargs, message):
    from mmti.engine.hooks import LearningSignalHook
    with pytest.raises(ValueError, match=message):
        LearningSignalHook(**kwargs)


def test_a_run_cut_off_before_its_final_samples_draws_them_on_resume(tmp_path):
    from conftest import tiny_config, train
    cfg = signal_cfg(tiny_config(tmp_path, max_iters=3, checkpoint_interval=1,
                                 embedding_interval=0, validation_interval=0, batch_size=2))
    runner, _ = train(cfg)
    grid = tmp_path / 'samples' / 'step_3.png'
    drawn = grid.read_bytes()
    grid.unlink()  # killed after the embedding was written, before the samples
    checkpoint = torch.load(tmp_path / 'iter_3.pth', weights_only=True)
    note = check_not_finished(runner.cfg, str(tmp_path / 'iter_3.pth'), checkpoint)
    assert f'ended before writing {grid}; writing its outputs now' in note
    resumed, recorder = train(signal_cfg(tiny_config(
        tmp_path, max_iters=3, checkpoint_interval=1, embedding_interval=0,
        validation_interval=0, batch_size=2)), resume=True)
    assert resumed.iter == 3 and not recorder.rows  # no step trained
    assert grid.read_bytes() == drawn
    with pytest.raises(RunFinished):
        check_not_finished(runner.cfg, str(tmp_path / 'iter_3.pth'), checkpoint)
