"""The quiet console: known noise off the terminal, kept in the log file; one progress bar."""
import io
import logging
from types import SimpleNamespace

from mmengine.logging import MessageHub, MMLogger

from mmti.engine.console import (ConsoleNoiseFilter, CpuEnvironmentFilter, is_console_handler,
                                 quiet_console)
from mmti.engine.hooks import ProgressBarHook

HOOK_TABLE = 'Hooks will be executed in the following order:\nbefore_run:\n(VERY_HIGH   ) X'
DEPRECATED = '"FileClient" will be deprecated in future. Please use io functions'


def test_noise_goes_to_the_file_only(tmp_path, capsys):
    log_file = tmp_path / 'run.log'
    logger = MMLogger.get_instance('mmti_test_console', log_file=str(log_file))
    quiet_console(logger)
    logger.info(HOOK_TABLE)
    logger.warning(DEPRECATED)
    logger.info('Iter(train) [1/4]  loss: 1.0')
    logger.debug('a debug line')
    console = capsys.readouterr().out
    assert 'Iter(train) [1/4]' in console
    assert 'Hooks will be executed' not in console and 'FileClient' not in console
    assert 'a debug line' not in console
    for handler in logger.handlers:
        handler.flush()
    text = log_file.read_text()
    assert 'Hooks will be executed' in text and 'FileClient' in text and 'Iter(train)' in text


def test_debug_level_shows_everything(tmp_path, capsys):
    logger = MMLogger.get_instance('mmti_test_console_debug', log_level='DEBUG')
    quiet_console(logger)
    assert not any(isinstance(f, ConsoleNoiseFilter)
                   for h in logger.handlers if is_console_handler(h) for f in h.filters)
    logger.info(HOOK_TABLE)
    assert 'Hooks will be executed' in capsys.readouterr().out


def test_cpu_environment_line():
    record = logging.LogRecord('x', logging.INFO, __file__, 1,
                               '\n    Distributed training: False\n    GPU number: 1\n', None, None)
    CpuEnvironmentFilter().filter(record)
    assert 'GPU number' not in record.msg and '    CPU processes: 1 (no GPU)' in record.msg


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def fake_runner(name: str, start: int = 0, total: int = 20):
    hub = MessageHub.get_instance(name)
    hub.update_scalar('train/loss', 0.5)
    return SimpleNamespace(max_iters=total, iter=start, message_hub=hub,
                           logger=MMLogger.get_instance(name))


def run_steps(hook, runner, steps):
    hook.before_train(runner)
    for _ in range(steps):
        hook.after_train_iter(runner, 0)
        runner.iter += 1
    hook.after_train(runner)


def test_progress_off_a_terminal_is_a_line_every_ten_percent():
    stream = io.StringIO()
    runner = fake_runner('mmti_test_progress_lines', start=4)  # resumed at step 4
    hook = ProgressBarHook(stream=stream)
    run_steps(hook, runner, 16)
    lines = stream.getvalue().splitlines()
    assert hook.start_step == 4
    assert [line.split(' (')[0] for line in lines] == [
        f'train: {p}%' for p in (30, 40, 50, 60, 70, 80, 90, 100)]
    assert lines[-1].startswith('train: 100% (20/20 steps)') and 'ETA' in lines[-1]
    assert lines[-1].endswith('loss 0.5000')


def test_progress_on_a_terminal_is_one_bar():
    stream = FakeTerminal()
    runner = fake_runner('mmti_test_progress_bar')
    run_steps(ProgressBarHook(stream=stream), runner, 20)
    text = stream.getvalue()
    assert '\n' not in text.rstrip('\n')  # one bar redrawn in place
    assert text.rstrip().split('\r')[-1].startswith('train: 100%|')
    assert '20/20' in text and 'loss 0.5000' in text
