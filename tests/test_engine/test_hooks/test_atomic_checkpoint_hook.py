"""AtomicCheckpointHook on a real mmengine Runner: safe to load, safe to kill."""
import os

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from mmti.engine.hooks.plain_state import from_plain as _from_plain
from mmti.engine.hooks.plain_state import to_plain as _to_plain

PLAIN_TYPES = (torch.Tensor, str, int, float, bool, type(None))


def non_plain(value, where: str = 'checkpoint') -> list[str]:
    """Where the value holds anything but tensors, builtin scalars and builtin containers."""
    if isinstance(value, dict):
        found = [f'{where}: key {k!r}' for k in value if not isinstance(k, PLAIN_TYPES)]
        for key, item in value.items():
            found += non_plain(item, f'{where}[{key!r}]')
        return found
    if isinstance(value, (list, tuple)):
        return [p for i, item in enumerate(value) for p in non_plain(item, f'{where}[{i}]')]
    if isinstance(value, PLAIN_TYPES) and not isinstance(value, np.generic):
        return []
    return [f'{where}: {type(value).__module__}.{type(value).__name__}']


def test_non_plain_finds_what_mmengine_would_pickle():
    assert non_plain({'a': [1, 'x', torch.zeros(1)], 'b': {'c': None}}) == []
    assert non_plain({'a': [np.float64(1.0)], 'b': HistoryBuffer([1.0], [1])}) == [
        "checkpoint['a'][0]: numpy.float64", "checkpoint['b']: mmengine.logging.history_buffer."
        'HistoryBuffer']


def test_checkpoints_load_with_weights_only(shared_run):
    for step in (4, 5):
        path = shared_run.work_dir / f'iter_{step}.pth'
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
        assert checkpoint['meta']['iter'] == step
        assert list(checkpoint['state_dict']) == ['token_embedding.rows.0']
        assert torch.equal(checkpoint['state_dict']['token_embedding.rows.0'],
                           shared_run.recorder.rows[step])
        assert len(checkpoint['optimizer']['state']) == 1
        assert non_plain(checkpoint) == []


def test_message_hub_is_stored_as_tensors_and_builtins(shared_run):
    checkpoint = torch.load(shared_run.work_dir / 'iter_5.pth', weights_only=True)
    hub = checkpoint['message_hub']
    assert non_plain(hub) == []
    assert {'train/loss', 'train/lr'} <= set(hub['log_scalars'])
    loss = hub['log_scalars']['train/loss']
    assert isinstance(loss['log'], torch.Tensor) and isinstance(loss['count'], torch.Tensor)
    # One loss per step, the values the live message hub logged.
    live_log, live_count = shared_run.runner.message_hub.get_scalar('train/loss').data
    assert loss['log'].shape == (5,)
    assert np.array_equal(loss['log'].numpy(), live_log[:5])
    assert np.array_equal(loss['count'].numpy(), live_count[:5])
    assert hub['runtime_info']['last_ckpt'] == str(shared_run.work_dir / 'iter_5.pth')


def test_last_checkpoint_names_the_latest_at_every_step(shared_run):
    work_dir = shared_run.work_dir
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'iter_5.pth')
    assert sorted(shared_run.recorder.files) == [1, 2, 3, 4, 5]
    for step, files in shared_run.recorder.files.items():
        assert files['last_checkpoint'].decode() == str(work_dir / f'iter_{step}.pth')
        assert f'iter_{step}.pth' in files


def test_no_partial_or_temporary_files_remain(shared_run):
    assert sorted(p.name for p in shared_run.work_dir.glob('.*')) == []


def test_max_keep_ckpts_keeps_only_the_newest(shared_run):
    assert shared_run.settings['max_keep_ckpts'] == 2
    assert sorted(p.name for p in shared_run.work_dir.glob('iter_*.pth')) == ['iter_4.pth',
                                                                              'iter_5.pth']
    # Never more than two at any moment: the newest two each time.
    for step, files in shared_run.recorder.files.items():
        kept = sorted(name for name in files if name.endswith('.pth'))
        assert kept == [f'iter_{s}.pth' for s in range(max(1, step - 1), step + 1)]


def test_keep_ckpt_ids_recorded_for_resume(shared_run):
    hub = torch.load(shared_run.work_dir / 'iter_5.pth', weights_only=True)['message_hub']
    assert hub['runtime_info']['keep_ckpt_ids'] == [4, 5]


def test_resume_restores_history_buffers(shared_run, build_tiny_runner, tmp_path):
    runner, _ = build_tiny_runner(tmp_path, **shared_run.settings)
    runner.resume(str(shared_run.work_dir / 'iter_5.pth'))
    assert runner.iter == 5
    restored = runner.message_hub.get_scalar('train/loss')
    assert isinstance(restored, HistoryBuffer)
    original = shared_run.runner.message_hub.get_scalar('train/loss')
    assert np.array_equal(restored.data[0], original.data[0][:5])
    assert restored.max_length == original.max_length
    assert runner.message_hub.get_info('keep_ckpt_ids') == [4, 5]
    assert torch.equal(runner.model.token_embedding.concept_rows('<cat-toy>'),
                       shared_run.recorder.rows[5])


# (file whose rename fails, which of its renames): the step-2 checkpoint itself,
# or the second update of last_checkpoint, after iter_2.pth is complete.
@pytest.mark.parametrize('failing, nth', [('iter_2.pth', 1), ('last_checkpoint', 2)])
def test_failed_rename_keeps_previous_checkpoint(build_tiny_runner, tmp_path, monkeypatch,
                                                 failing, nth):
    runner, recorder = build_tiny_runner(tmp_path, max_iters=2, checkpoint_interval=1,
                                         embedding_interval=0, validation_interval=None,
                                         batch_size=1)
    real_replace = os.replace
    calls = []

    def replace_failing_once(src, dst, *args, **kwargs):
        if os.path.basename(dst) == failing:
            calls.append(dst)
            if len(calls) == nth:
                raise OSError(28, 'injected: no space left on device')
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, 'replace', replace_failing_once)
    with pytest.raises(OSError, match='injected'):
        runner.train()
    monkeypatch.undo()
    assert len(calls) == nth

    first = tmp_path / 'iter_1.pth'
    assert (tmp_path / 'last_checkpoint').read_text() == str(first)
    assert first.read_bytes() == recorder.files[1]['iter_1.pth']
    checkpoint = torch.load(first, weights_only=True)
    assert checkpoint['meta']['iter'] == 1
    assert torch.equal(checkpoint['state_dict']['token_embedding.rows.0'], recorder.rows[1])
    if failing == 'iter_2.pth':
        assert not (tmp_path / 'iter_2.pth').exists()
    else:  # the checkpoint is complete; only the pointer to it was not updated
        assert torch.load(tmp_path / 'iter_2.pth', weights_only=True)['meta']['iter'] == 2
        assert list(tmp_path.glob('.last_checkpoint.*')) == []


def make_hub(name: str) -> MessageHub:
    hub = MessageHub.get_instance(name)
    for value in (1.5, 2.25, np.float32(0.5), torch.tensor(3.0)):
        hub.update_scalar('train/loss', value)
    hub.update_scalar('train/lr', 5e-4)
    hub.update_scalar('train/loss_sum', 4.0, count=4)
    hub.update_info('iter', 3)
    hub.update_info('seed', np.int64(7))
    hub.update_info('eta', np.float64(12.5))
    hub.update_info('array', np.arange(4, dtype=np.int32))
    hub.update_info('keep_ckpt_ids', [2, 3])
    hub.update_info('nested', {'a': (np.float32(1.0), 'x'), 'b': [np.int16(2)]})
    hub.update_info('last_ckpt', '/tmp/iter_3.pth')
    hub.update_info('not_resumed', 1, resumed=False)
    return hub


def test_to_plain_from_plain_round_trips_a_message_hub(tmp_path):
    original = make_hub('mmti_test_plain_source')
    state = original.state_dict()
    plain = _to_plain(state)
    assert non_plain(plain) == []
    path = tmp_path / 'hub.pth'
    torch.save(plain, path)
    # weights_only refuses mmengine's own state dict; the plain one loads.
    with pytest.raises(Exception):
        torch.save(state, tmp_path / 'raw.pth')
        torch.load(tmp_path / 'raw.pth', weights_only=True)
    loaded = _from_plain(torch.load(path, weights_only=True))

    restored = MessageHub.get_instance('mmti_test_plain_target')
    restored.load_state_dict(loaded)
    assert set(restored.log_scalars) == set(original.log_scalars)
    for key, buffer in original.log_scalars.items():
        copy = restored.log_scalars[key]
        assert isinstance(copy, HistoryBuffer)
        assert copy.max_length == buffer.max_length
        for mine, theirs in zip(copy.data, buffer.data):
            assert np.array_equal(mine, theirs)
        assert copy.current() == buffer.current()
        assert copy.mean() == buffer.mean() and copy.max() == buffer.max()
    assert restored.get_scalar('train/loss_sum').data[1].tolist() == [4]

    info = restored.runtime_info
    assert 'not_resumed' not in info
    assert info['iter'] == 3 and info['seed'] == 7 and info['eta'] == 12.5
    assert info['keep_ckpt_ids'] == [2, 3] and info['last_ckpt'] == '/tmp/iter_3.pth'
    assert torch.equal(torch.as_tensor(info['array']), torch.arange(4, dtype=torch.int32))
    assert info['nested'] == {'a': (1.0, 'x'), 'b': [2]}
    resumed = {k: v for k, v in state['resumed_keys'].items() if v}
    assert dict(restored.state_dict()['resumed_keys']) == resumed


def test_bounded_history_buffer_round_trips():
    buffer = HistoryBuffer(max_length=3)
    for value in range(5):
        buffer.update(float(value), count=value + 1)
    copy = _from_plain(_to_plain({'short': buffer}))['short']
    assert copy.max_length == 3
    assert copy.data[0].tolist() == [2.0, 3.0, 4.0] and copy.data[1].tolist() == [3, 4, 5]
    copy.update(5.0)  # still bounded: the oldest value goes
    assert copy.data[0].tolist() == [3.0, 4.0, 5.0]


def test_keep_all_checkpoints(build_tiny_runner, tmp_path):
    runner, _ = build_tiny_runner(tmp_path, max_iters=2, checkpoint_interval=1,
                                  embedding_interval=0, validation_interval=None,
                                  max_keep_ckpts=-1, batch_size=1)
    runner.train()
    assert sorted(p.name for p in tmp_path.glob('iter_*.pth')) == ['iter_1.pth', 'iter_2.pth']


def test_mmti_names_never_shadow_mmengine_names():
    """type='CheckpointHook' (or any mmengine name) means mmengine's class, not ours."""
    import mmengine.registry as mmengine_registry

    import mmti.engine  # noqa: F401  (registers everything)
    from mmti.registry import HOOKS, LOOPS
    for ours, theirs in ((HOOKS, mmengine_registry.HOOKS), (LOOPS, mmengine_registry.LOOPS)):
        shadowed = sorted(set(ours.module_dict) & set(theirs.module_dict))
        assert shadowed == [], f'{ours.name}: {shadowed}'
    from mmengine.hooks import CheckpointHook
    assert type(HOOKS.build(dict(type='CheckpointHook', interval=1))) is CheckpointHook


def test_by_epoch_is_refused():
    from mmti.registry import HOOKS
    with pytest.raises(ValueError, match='by_epoch=False'):
        HOOKS.build(dict(type='AtomicCheckpointHook', interval=1, by_epoch=True))


def test_stale_temp_files_are_removed_at_start(build_tiny_runner, tmp_path):
    import subprocess
    import sys
    dead = int(subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                              capture_output=True, text=True, check=True).stdout)
    stale = tmp_path / f'.iter_2.pth.{dead}.k1ll3d.tmp'
    stale.write_bytes(b'half a checkpoint')
    runner, _ = build_tiny_runner(tmp_path, max_iters=1, checkpoint_interval=1,
                                  embedding_interval=0, validation_interval=None, batch_size=1)
    runner.train()
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.glob('.*')) == []


def test_only_rank_0_touches_files(build_tiny_runner, tmp_path, monkeypatch):
    """On other ranks: no checkpoint, no pointer, no cleanup of stale files."""
    from mmti.engine.hooks import atomic_checkpoint_hook
    monkeypatch.setattr(atomic_checkpoint_hook, 'is_main_process', lambda: False)
    stale = tmp_path / '.iter_2.pth.999999999.k1ll3d.tmp'  # no such pid
    stale.write_bytes(b'x')
    runner, _ = build_tiny_runner(tmp_path, max_iters=2, checkpoint_interval=1,
                                  embedding_interval=0, validation_interval=None, batch_size=1)
    runner.train()
    assert stale.exists()
    assert not list(tmp_path.glob('iter_*.pth')) and not (tmp_path / 'last_checkpoint').exists()
    hook = next(h for h in runner.hooks if type(h).__name__ == 'AtomicCheckpointHook')
    assert hook.keep_ckpt_ids == [1, 2]  # the bookkeeping runs on every rank, like mmengine's


@pytest.mark.parametrize('device', [
    'cpu',
    pytest.param('cuda', marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason='needs a GPU')),
])
def test_a_hub_loaded_onto_the_training_device_round_trips(tmp_path, device):
    # --resume on a GPU loads the checkpoint's tensors onto the GPU (mmengine's
    # map_location='default'); the history buffers must still come back.
    state = make_hub(f'mmti_test_plain_{device}').state_dict()
    torch.save(_to_plain(state), tmp_path / 'hub.pth')
    loaded = _from_plain(torch.load(tmp_path / 'hub.pth', map_location=device, weights_only=True))
    restored = MessageHub.get_instance(f'mmti_test_plain_{device}_target')
    restored.load_state_dict(loaded)
    for key, buffer in state['log_scalars'].items():
        for mine, theirs in zip(restored.log_scalars[key].data, buffer.data):
            assert np.array_equal(mine, theirs)


def test_a_run_at_learning_rate_0_resumes_at_the_configured_rate(tmp_path):
    from conftest import tiny_config, train
    import torch

    def config(lr, max_iters):
        cfg = tiny_config(tmp_path, max_iters=max_iters, checkpoint_interval=1,
                          embedding_interval=0, validation_interval=None, batch_size=1)
        cfg.default_hooks.learning_signal.stop = None
        cfg.optim_wrapper.optimizer.lr = lr
        return cfg

    _, still = train(config(0.0, 2))
    assert torch.equal(still.rows[1], still.rows[2])  # lr 0: the rows never moved
    runner, moved = train(config(1e-3, 4), resume=True)
    final = torch.load(tmp_path / 'iter_4.pth', weights_only=True)
    assert [g['lr'] for g in final['optimizer']['param_groups']] == [pytest.approx(1e-3)]
    assert not torch.equal(moved.rows[4], still.rows[2])  # they move now
    log = next(iter(sorted(tmp_path.glob('*/*.log'))[-1:])).read_text()
    assert "Resuming with the learning rate of the config (0.001) instead of the checkpoint's (0)" in log
