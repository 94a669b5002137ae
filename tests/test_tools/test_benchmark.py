"""tools/benchmark.py: a few real steps on the tiny model, a table with sane numbers."""
import pytest

from tool_runner import TINY_CONFIG, load_tool, run_tool

FIELDS = {'median_ms', 'p90_ms', 'steps_per_s', 'images_per_s', 'peak_memory_mb', 'stages_ms',
          'floor_median_ms', 'ratio_to_floor', 'batch_size', 'device'}


def test_benchmark_json_fields_are_present_and_sane():
    rows = load_tool('benchmark').main([TINY_CONFIG, '--steps', '4', '--warmup', '1', '--json',
                                        '--batch-sizes', '1,2', '--threads', '2'])
    assert [r['batch_size'] for r in rows] == [1, 2]
    for row in rows:
        assert FIELDS <= set(row)
        assert 0 < row['median_ms'] <= row['p90_ms'] < 10_000
        assert abs(row['steps_per_s'] * row['median_ms'] - 1000) < 1e-6
        assert abs(row['images_per_s'] - row['batch_size'] * row['steps_per_s']) < 1e-6
        assert row['peak_memory_mb'] > 50  # max RSS of a process holding torch and a model
        assert set(row['stages_ms']) == {'data', 'vae', 'text_encoder', 'unet_forward',
                                         'backward', 'optimizer'}
        assert all(v >= 0 for v in row['stages_ms'].values())
        # The UNet and the backward pass are real work on every step.
        assert row['stages_ms']['unet_forward'] > 0 and row['stages_ms']['backward'] > 0
        # Speed targets live in the benchmark's output, not in tests: only the
        # ratio's definition is checked here.
        assert 0 < row['floor_median_ms']
        assert row['ratio_to_floor'] == pytest.approx(row['median_ms'] / row['floor_median_ms'],
                                                      rel=1e-6)
    assert rows[0]['device'] == 'cpu'
    # The config's learning signal: its cost per measurement and what it adds.
    for row in rows:
        assert row['signal_ms'] > 0 and row['signal_overhead'] > 0
        assert row['signal_samples'] >= 16


def test_benchmark_leaves_out_a_signal_the_config_turns_off():
    (row,) = load_tool('benchmark').main([TINY_CONFIG, '--steps', '2', '--warmup', '1', '--json',
                                          '--batch-sizes', '1', '--threads', '1', '--cfg-options',
                                          'default_hooks.learning_signal=None'])
    assert 'signal_ms' not in row and row['median_ms'] > 0


def test_benchmark_cli_prints_the_table():
    result = run_tool('tools/benchmark.py', TINY_CONFIG, '--steps', '3', '--warmup', '1',
                      '--threads', '1')
    header = next(line for line in result.stdout.splitlines() if line.startswith('| batch'))
    assert 'median ms' in header and 'step/floor' in header and 'unet_forward' in header
    row = next(line for line in result.stdout.splitlines() if line.startswith('| 4 |'))
    assert len(row.split('|')) == len(header.split('|'))
    assert 'learning-signal measurement' in result.stdout


def test_benchmark_profile_counts_ops_of_the_step_and_its_floor():
    (row,) = load_tool('benchmark').main([TINY_CONFIG, '--steps', '2', '--warmup', '1', '--json',
                                          '--batch-sizes', '1', '--threads', '1', '--profile', '2'])
    step, floor = row['profile']['step'], row['profile']['floor']
    # Text encoder + UNet forward and backward are hundreds of ops on any device.
    assert floor['aten_ops_per_step'] > 300
    # The floor is the step minus its data, VAE, noise and optimizer work.
    assert step['aten_ops_per_step'] > floor['aten_ops_per_step']
    assert step['launches_per_step'] == floor['launches_per_step'] == 0  # CPU: nothing launched
    assert 0 < len(step['top_self_cpu_ms_per_step']) <= 8
    assert all(v >= 0 for v in step['top_self_cpu_ms_per_step'].values())


@pytest.mark.parametrize('args, message', [
    (['configs/nonexistent.py'], 'config configs/nonexistent.py does not exist'),
    ([TINY_CONFIG, '--steps', '0'], '--steps must be at least 1'),
    ([TINY_CONFIG, '--batch-sizes', '1,x'], '--batch-sizes must be whole numbers'),
    ([TINY_CONFIG, '--cfg-options', 'default_hooks.learning_signal.interval=0'],
     'default_hooks.learning_signal.interval must be a whole number >= 1, got 0'),
])
def test_bad_input_is_one_line_and_no_traceback(args, message):
    result = run_tool('tools/benchmark.py', *args, '--warmup', '0', check=False)
    assert result.returncode == 2
    assert message in result.stderr and 'Traceback' not in result.stderr


def test_the_work_dir_is_removed(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    load_tool('benchmark').main([TINY_CONFIG, '--steps', '1', '--warmup', '0', '--json',
                                 '--batch-sizes', '1', '--threads', '1'])
    assert not list(tmp_path.glob('mmti-benchmark-*'))
