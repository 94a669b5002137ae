"""One progress bar with ETA for training, on rank 0."""
import sys
import time
from contextlib import ExitStack
from datetime import timedelta

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from mmti.registry import HOOKS
from .concept_queue_hook import ConceptQueueHook


def format_duration(seconds: float) -> str:
    """``0:01:05`` (hours:minutes:seconds)."""
    return str(timedelta(seconds=round(max(0.0, seconds))))


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """A tqdm bar over the training steps, with ETA, on stderr (rank 0 only).

    On a terminal the bar updates in place and the log lines are printed
    above it. When stderr is not a terminal (CI, ``nohup``, a pipe), a bar
    would write a line per update; instead one compact line is printed every
    ``percent`` per cent of the run.

    The bar never asks the device for the loss (that would make the host
    wait each step); it shows the latest loss the logger already read.

    Args:
        percent: Per cent of the run between lines when stderr is no terminal.
        stream: Where to write (default: ``sys.stderr``, looked up at run time).
    """

    priority = 'BELOW_NORMAL'  # after BatchedRuntimeInfoHook has logged the loss

    def __init__(self, percent: int = 10, stream=None):
        self.percent = max(1, int(percent))
        self.stream = stream
        self._bar = None
        self._stack = None
        self._stream = None
        self.start_step = 0  # where this run began (a resumed run: the checkpoint's step)

    def before_train(self, runner) -> None:
        self._bar, self._stack, self._stream = None, None, None
        self.start_step = runner.iter
        if not is_main_process():
            return
        stream = self.stream or sys.stderr
        self._total, self._start_iter = runner.max_iters, runner.iter
        # A queue of concepts knows a tighter bound than max_iters (it ran its
        # before_train first: NORMAL priority).
        for hook in getattr(runner, 'hooks', ()):
            if isinstance(hook, ConceptQueueHook) and hook.last_step:
                self._total = hook.last_step
        self._started = time.monotonic()
        self._next_report = self._report_step(runner.iter)
        self._tty = bool(getattr(stream, 'isatty', lambda: False)())
        if self._tty:
            self._stack = ExitStack()
            self._bar = self._stack.enter_context(tqdm(
                total=self._total, initial=self._start_iter, desc='train', unit='step',
                file=stream, dynamic_ncols=True, leave=True))
            # Log lines go above the bar instead of through it.
            self._stack.enter_context(logging_redirect_tqdm(loggers=[runner.logger]))
        self._stream = stream

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._stream is None:
            return
        step = runner.iter + 1
        loss = self._latest_loss(runner)
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            if loss is not None:
                self._bar.set_postfix_str(f'loss {loss:.4f}', refresh=False)
        elif step >= self._next_report or step == self._total:
            print(self._line(step, loss), file=self._stream, flush=True)
            self._next_report = self._report_step(step)

    def after_train(self, runner) -> None:
        stopped_early = self._stream is not None and runner.iter < self._total
        self._close()
        if stopped_early:  # LearningSignalHook ended the run: say so where the bar was
            elapsed = format_duration(time.monotonic() - self._started)
            why = ('every concept is done' if any(isinstance(h, ConceptQueueHook)
                                                  for h in getattr(runner, 'hooks', ()))
                   else 'the learning signal stopped falling')
            print(f'train: stopped at step {runner.iter} of at most {self._total}, {elapsed}: '
                  f'{why}', file=self._stream, flush=True)

    def after_run(self, runner) -> None:
        self._close()

    def _close(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._bar, self._stack = None, None

    def _report_step(self, step: int) -> int:
        """The next step at a multiple of ``percent`` per cent after ``step``."""
        every = max(1, self._total * self.percent // 100)
        return (step // every + 1) * every

    def _line(self, step: int, loss: float | None) -> str:
        elapsed = time.monotonic() - self._started
        done = step - self._start_iter
        eta = elapsed / done * (self._total - step) if done > 0 else 0.0
        loss_text = f', loss {loss:.4f}' if loss is not None else ''
        return (f'train: {100 * step // max(1, self._total)}% ({step}/{self._total} steps), '
                f'{format_duration(elapsed)} elapsed, ETA {format_duration(eta)}{loss_text}')

    @staticmethod
    def _latest_loss(runner) -> float | None:
        """The last loss in the message hub (only numbers read out already)."""
        buffer = runner.message_hub.log_scalars.get('train/loss')
        if buffer is None or not len(buffer.data[0]):
            return None
        return float(buffer.current())
