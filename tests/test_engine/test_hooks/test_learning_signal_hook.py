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
    assert again['stopped'] == series['stopped']
    assert (broken / 'learned_embeds.safetensors').read_bytes() == (
        work / 'learned_embeds.safetensors').read_bytes()


def test_bad_interval_is_refused():
    from mmti.engine.hooks import LearningSignalHook
    with pytest.raises(ValueError, match='interval'):
        LearningSignalHook(interval=0)
    with pytest.raises(ValueError, match='stop.window'):
        LearningSignalHook(stop=dict(window=0))
