"""Measure the learning signal while training, and stop when it says the
concept is learned."""
import json
import logging
from pathlib import Path

import torch
from mmengine.dist import broadcast, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmti.fileio import atomic_write
from mmti.registry import HOOKS
from mmti.utils import UserError
from ..learning_signal import (DEFAULT_INTERVAL, DEFAULT_NUM_SAMPLES, FixedBatchLoss,
                               check_signal_settings, concept_rows, distance_moved, word_norms,
                               word_size)
from ..stop_rules import NOT_LEARNING_FIX, PlateauStop
from .periodic_hook import unwrap_model

SIGNAL_FILE = 'learning_signal.json'


@HOOKS.register_module()
class LearningSignalHook(Hook):
    """Every ``interval`` steps, compute the loss on a fixed evaluation batch
    (:class:`~mmti.engine.learning_signal.FixedBatchLoss`), log it as
    ``learning_signal`` and keep the series in ``<work_dir>/learning_signal.json``;
    with ``stop``, end training when :class:`~mmti.engine.stop_rules.PlateauStop`
    says the signal has stopped falling, and raise :class:`NotLearningError`
    when it says the rows are not learning at all (nothing is saved as learned).

    ``train_cfg.max_iters`` stays the cap. A stopped run ends as a finished
    one does: the checkpoint hook saves the stop step, the embedding hook
    writes ``learned_embeds.safetensors`` from it, and ``--resume`` says there
    is nothing to resume (or, cut off before that file, writes it without
    training). The series and the stop travel in checkpoints (a weights-only
    ``load_from`` starts a new series), so a resumed run stops at the step an
    uninterrupted one would.

    Args:
        interval: Steps between measurements.
        num_samples: Fixed samples (at least; rounded up to whole passes over
            the training images).
        stop: Keyword arguments of :class:`PlateauStop`, or None to measure only.
        batch_size: Samples per forward pass; None: the training batch size.
    """

    # After NonFiniteLossHook (ABOVE_NORMAL): never measure poisoned rows;
    # before the checkpoint and saving hooks (LOW, VERY_LOW): a stop decided
    # at this step is saved at this step.
    priority = 'NORMAL'

    def __init__(self, interval: int = DEFAULT_INTERVAL, num_samples: int = DEFAULT_NUM_SAMPLES,
                 stop: dict | None = None, batch_size: int | None = None):
        self.interval, self.num_samples, self.batch_size = check_signal_settings(
            'default_hooks.learning_signal', interval, num_samples, batch_size)
        self.rule = (PlateauStop.from_config(stop, self.interval, 'default_hooks.learning_signal')
                     if stop is not None else None)
        self.steps: list[int] = []
        self.values: list[float] = []
        #: The rows' distance from where the series started, per measurement,
        #: in units of an average word's size (``word_size``); empty where a
        #: checkpoint from before this series carried no starting rows.
        self.moved: list[float] = []
        self.stopped: dict | None = None
        self._signal = None
        self._start_rows: torch.Tensor | None = None
        self._tokens: list[str] = []  # the trained concepts, whose rows move
        self._word_size = 1.0

    # ----------------------------------------------------------- the run
    def build_signal(self, loader, seed: int) -> FixedBatchLoss:
        """The fixed-batch loss this hook measures, over ``loader``'s dataset."""
        return FixedBatchLoss(loader.dataset, loader.collate_fn, self.num_samples, seed=seed,
                              batch_size=self.batch_size or loader.batch_size)

    def before_train(self, runner) -> None:
        self._signal = self.build_signal(runner.train_dataloader, runner.seed)
        model = unwrap_model(runner.model)
        self._tokens = model.vocabulary.slots[0].table.trainable_concepts()
        self._word_size = word_size(model, self._tokens, word_norms(model))
        if not self.steps:  # a fresh run: where the rows start from
            self._start_rows = concept_rows(model, self._tokens)
            self._measure(runner, runner.iter)
        self._write(runner)  # a resumed run's file says what its checkpoint holds
        if self.rule is not None and self.stopped is None and runner.iter < runner.max_iters:
            warning = self.rule.cap_warning(self.interval, self.steps[0], runner.max_iters,
                                            'train_cfg.max_iters', 'default_hooks.learning_signal')
            if warning:
                print_log(warning, logger='current', level=logging.WARNING)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        step = runner.iter + 1
        if step % self.interval:
            return
        self._measure(runner, step)
        reason = failure = None
        if self.rule is not None and self.stopped is None:
            failure = self.rule.not_learning(self.steps, self.values, self.moved)
            reason = None if failure else self.rule.reason_to_stop(self.steps, self.values)
        if reason is not None:
            self.stopped = {'step': step, 'reason': reason}
            runner.train_loop.stop_training = True
        self._write(runner)
        if failure is not None:
            lr = runner.optim_wrapper.get_lr()['lr'][0]
            raise NotLearningError(
                f'Stopped at step {step}: {failure} (learning rate {lr:g}). Nothing was saved as '
                f'learned; {SIGNAL_FILE} in the work dir has the series. Fix: {NOT_LEARNING_FIX} '
                'and train again with another --work-dir, or pass '
                'default_hooks.learning_signal.stop=None to train every step anyway.')
        if reason is not None:
            print_log(f'Stopping at step {step} of at most {runner.max_iters}: {reason}.',
                      logger='current', level=logging.INFO)

    def after_train(self, runner) -> None:
        self._write(runner)
        if self.rule is not None and self.stopped is None and runner.iter >= runner.max_iters:
            falling = self.rule.still_falling(self.steps, self.values)
            if falling:
                print_log(f'Reached train_cfg.max_iters={runner.max_iters} before the learning '
                          f'signal flattened: {falling}. The concept may learn more: resume with '
                          'a larger train_cfg.max_iters, or train with a larger learning rate.',
                          logger='current', level=logging.WARNING)

    def _measure(self, runner, step: int) -> None:
        model = unwrap_model(runner.model)
        value = torch.tensor([self._signal(model)], dtype=torch.float64,
                             device=next(model.parameters()).device)
        broadcast(value, src=0)  # every rank decides on rank 0's number
        self.steps.append(step)
        self.values.append(float(value))
        if self._start_rows is not None:
            self.moved.append(distance_moved(self._start_rows, concept_rows(model, self._tokens),
                                             self._word_size))
        runner.message_hub.update_scalar('train/learning_signal', self.values[-1])

    def _write(self, runner) -> None:
        if not is_main_process():
            return
        with atomic_write(Path(runner.work_dir) / SIGNAL_FILE) as tmp:
            tmp.write_text(json.dumps(self.state(), indent=1) + '\n', encoding='utf-8')

    # ------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {'interval': self.interval, 'num_samples': self.num_samples,
                'rule': self.rule.describe() if self.rule else None,
                'steps': list(self.steps), 'values': list(self.values),
                'moved': list(self.moved), 'stopped': self.stopped}

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['learning_signal'] = self.state()
        if self._start_rows is not None:
            checkpoint['learning_signal_start_rows'] = self._start_rows

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get('learning_signal')
        if not saved or not runner.cfg.get('resume'):
            return  # no series saved, or a weights-only load_from: a fresh series
        # (A series of other num_samples is refused before this: resume.check_signal_matches.)
        step = checkpoint['meta'].get('iter', 0)
        kept = [i for i, s in enumerate(saved['steps']) if s <= step]
        self.steps = [saved['steps'][i] for i in kept]
        self.values = [saved['values'][i] for i in kept]
        start = checkpoint.get('learning_signal_start_rows')
        moved = saved.get('moved') or []
        if start is not None and len(moved) == len(saved['steps']):
            self._start_rows, self.moved = start.float(), [moved[i] for i in kept]
        else:  # saved before the rows were tracked: the signal alone judges
            self._start_rows, self.moved = None, []
        stopped = saved.get('stopped')
        if stopped and stopped.get('step') == step and self.rule is not None:
            # The run stopped here and was cut off before its end (outputs not
            # written): finish it without training on.
            self.stopped = stopped
            runner.train_loop.stop_training = True
        else:  # training on past the stop (the rule switched off), or from before it
            self.stopped = None


class NotLearningError(UserError):
    """The learning signal says the rows are not learning: one line, exit status 2."""

