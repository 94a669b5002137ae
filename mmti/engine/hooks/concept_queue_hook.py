"""Train a list of concepts in one run: each stops on its own learning
signal, and its lane goes to the next concept waiting."""
import json
import logging
from pathlib import Path

import torch
from mmengine.dist import broadcast, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmti.datasets.concept_specs import concept_seed
from mmti.fileio import atomic_write
from mmti.registry import HOOKS
from mmti.utils import NonFiniteRenderError
from .concept_evaluation import ConceptEvaluator
from .concept_outputs import NOT_LEARNED_FILE, SUMMARY_FILE, write_concept_outputs, write_summary
from .learning_signal_hook import NotLearningError
from ..learning_signal import (DEFAULT_INTERVAL, DEFAULT_NUM_SAMPLES, FixedBatchLoss,
                               check_signal_settings, concept_rows, distance_moved, word_norms,
                               word_size)
from ..stop_rules import NOT_LEARNING_FIX, PlateauStop
from .periodic_hook import unwrap_model

QUEUE_FILE = 'concepts.json'


@HOOKS.register_module()
class ConceptQueueHook(Hook):
    """The many-concept counterpart of ``LearningSignalHook``.

    Every ``interval`` of a concept's own steps, its learning signal (the
    loss on its own fixed batch, :class:`~mmti.engine.learning_signal.FixedBatchLoss`)
    is measured; when :class:`~mmti.engine.stop_rules.PlateauStop` says it
    has stopped falling (or the concept reached ``max_steps``), the concept
    is done: its outputs are written (``concepts/<name>/``: embedding file,
    sample grid, curves) and its lane in the batch goes to the next concept
    waiting (``ConceptBatchSampler``'s queue). The run ends when every
    concept is done; ``train_cfg.max_iters`` stays the cap of the whole run.

    A concept's steps, measurements and stop depend on its own rows and
    samples only, so it stops at the step it would stop at alone. The queue
    and every series travel in checkpoints: a resumed run continues the
    queue exactly. ``<work_dir>/concepts.json`` holds the queue, the series
    and the stops; ``concepts.md`` the summary table.

    Args:
        interval: A concept's steps between measurements.
        num_samples: Fixed samples per concept (rounded up to whole passes
            over its images).
        stop: Keyword arguments of :class:`PlateauStop`; None trains every
            concept to ``max_steps``.
        max_steps: Most steps of one concept; None: ``train_cfg.max_iters``.
        batch_size: Samples per forward pass of a measurement; None: the
            packed training batch (per-concept batch size x lanes).
        evaluate: Measure each concept when it is done, as tools/evaluate.py
            does, with the config's ``evaluation`` block (a dict: settings
            that replace the block's, e.g. ``dict(num_samples=1)``); its
            image and text similarity, gap closed and text ratio go into
            the summary table. Rank 0 only; without an ``evaluation`` block
            nothing is measured (a warning says so).
    """

    # As LearningSignalHook: after NonFiniteLossHook, before checkpoints.
    priority = 'NORMAL'

    def __init__(self, interval: int = DEFAULT_INTERVAL, num_samples: int = DEFAULT_NUM_SAMPLES,
                 stop: dict | None = None, max_steps: int | None = None,
                 batch_size: int | None = None,
                 evaluate: bool | dict = False):
        where = 'default_hooks.concept_queue'
        self.interval, self.num_samples, self.batch_size = check_signal_settings(
            where, interval, num_samples, batch_size)
        self.rule = PlateauStop.from_config(stop, self.interval, where) if stop is not None else None
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int)
                                      or max_steps < 1):
            raise ValueError(f'{where}.max_steps must be a whole number >= 1 or None, got '
                             f'{max_steps!r}.')
        self.max_steps = max_steps
        self.evaluate = dict(evaluate) if isinstance(evaluate, dict) else bool(evaluate)
        self._evaluator = None
        self.series: dict[str, dict] = {}
        self.stops: dict[str, dict] = {}
        self.queue = None
        self.tokens: list[str] = []
        self._signals: list[FixedBatchLoss] = []
        self._start_rows: dict[str, torch.Tensor] = {}  # each concept's rows when its series began
        self._word_norms: list[float] = []  # the yardstick of the rows' distance moved
        self._changed = False

    # ------------------------------------------------------------ the run
    def _attach(self, runner) -> None:
        sampler = getattr(runner.train_dataloader, 'batch_sampler', None)
        if not hasattr(sampler, 'queue'):
            raise ValueError("ConceptQueueHook needs train_dataloader.batch_sampler="
                             "dict(type='ConceptBatchSampler') over a ConceptListDataset.")
        self.queue = sampler.queue
        self.tokens = runner.train_dataloader.dataset.tokens

    last_step: int | None = None

    def before_train(self, runner) -> None:
        if self.queue is None:
            self._attach(runner)
        loader = runner.train_dataloader
        self.max_steps = int(self.max_steps or runner.max_iters)
        warning = (self.rule.cap_warning(self.interval, 0, self.max_steps, 'the concepts\' '
                                         'max_steps', 'default_hooks.concept_queue')
                   if self.rule is not None and not self.queue.done else None)
        if warning:
            print_log(warning, logger='current', level=logging.WARNING)
        needed = runner.iter + self.queue.most_steps_left(self.max_steps)
        #: The run's last step at the latest (the progress bar's total).
        self.last_step = min(runner.max_iters, needed)
        if runner.max_iters < needed:
            print_log(f'train_cfg.max_iters={runner.max_iters} may end the run before every concept '
                      f'is done: {len(self.tokens)} concepts in {len(self.queue.lanes)} lanes need '
                      f'up to {needed} steps if none stops before max_steps={self.max_steps}.',
                      logger='current', level=logging.WARNING)
        # Measured in batches of the packed training batch's size: known to fit in memory.
        packed = loader.batch_sampler.batch_size * len(self.queue.lanes)
        if self.evaluate is not False and is_main_process():
            self._evaluator = self._build_evaluator(runner)
        self._signals = [
            FixedBatchLoss(dataset, loader.collate_fn, self.num_samples,
                           seed=concept_seed(runner.seed, token), batch_size=self.batch_size or packed)
            for dataset, token in zip(loader.dataset.datasets, self.tokens)]
        self._word_norms = word_norms(unwrap_model(runner.model))
        for concept in self.queue.training():  # fresh concepts: where their rows start from
            if not self.series.get(self.tokens[concept], {}).get('steps'):
                self._measure(runner, concept)
        self._write(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.queue.advance()
        finished = []
        for concept in self.queue.training():
            step = self.queue.steps[concept]
            reason, kind = None, 'learned'
            if step % self.interval == 0:
                self._measure(runner, concept)
                if self.rule is not None:
                    series = self.series[self.tokens[concept]]
                    reason = self.rule.not_learning(series['steps'], series['values'],
                                                    series.get('moved'))
                    if reason is not None:
                        kind = 'not_learning'
                    else:
                        reason = self.rule.reason_to_stop(series['steps'], series['values'])
            if reason is None and step >= self.max_steps:
                reason, kind = f'it reached max_steps ({self.max_steps})', 'max_steps'
            if reason is not None:
                finished.append((concept, reason, kind))
        for concept, reason, kind in finished:
            token = self.tokens[concept]
            self.queue.finish(concept)
            self.stops[token] = {'step': self.queue.steps[concept], 'run_step': runner.iter + 1,
                                 'reason': reason, 'kind': kind}
            if kind == 'not_learning':
                print_log(f'{token} is NOT learned: stopped after {self.queue.steps[concept]} of '
                          f'its steps (run step {runner.iter + 1}): {reason}. Its rows are kept '
                          f'as {NOT_LEARNED_FILE} for inspection, and left out of the run\'s '
                          f'combined file; {NOT_LEARNING_FIX} and train it again.',
                          logger='current', level=logging.WARNING)
            else:
                print_log(f'{token} done after {self.queue.steps[concept]} of its steps (run '
                          f'step {runner.iter + 1}): {reason}.', logger='current',
                          level=logging.INFO)
        if finished:
            self._outputs(runner, [concept for concept, _, _ in finished])
        for concept in self.queue.admit():
            self._measure(runner, concept)
            print_log(f'{self.tokens[concept]} starts training at run step {runner.iter + 1}.',
                      logger='current', level=logging.INFO)
        if self.queue.done:
            runner.train_loop.stop_training = True
        if self._changed:
            self._write(runner)

    def after_train(self, runner) -> None:
        # The run's cap ended concepts still training: their rows are written too.
        capped = [c for c in self.queue.training() if self.tokens[c] not in self.stops]
        for concept in capped:
            self.stops[self.tokens[concept]] = {
                'step': self.queue.steps[concept], 'run_step': runner.iter,
                'reason': f'the run reached train_cfg.max_iters ({runner.max_iters}) first',
                'kind': 'capped'}
        if capped:
            self._outputs(runner, capped)
        self._write(runner)
        if is_main_process():
            path = write_summary(runner.work_dir, self.summary_rows())
            never = [t for t, s in zip(self.tokens, self.queue.status) if s == 'waiting']
            if never:
                print_log(f'{len(never)} concept(s) never started ({", ".join(never)}): the run '
                          f'reached train_cfg.max_iters={runner.max_iters}; raise it and resume.',
                          logger='current', level=logging.WARNING)
            print_log(f'Saved the concept summary to {path}', logger='current', level=logging.INFO)
        if self.tokens and len(self.not_learned_tokens) == len(self.tokens):
            raise NotLearningError(
                f'No concept learned: all {len(self.tokens)} stopped as not learning (their '
                f'reasons are in {SUMMARY_FILE}); nothing was saved as learned. Fix: '
                f'{NOT_LEARNING_FIX}, and train again into another --work-dir.')

    @property
    def not_learned_tokens(self) -> list[str]:
        """Concepts whose rows did not learn: no file of the run calls them learned."""
        return [t for t in self.tokens if self.stops.get(t, {}).get('kind') == 'not_learning']

    # ------------------------------------------------------------- helpers
    def _measure(self, runner, concept: int) -> None:
        model, token = unwrap_model(runner.model), self.tokens[concept]
        value = torch.tensor([self._signals[concept](model)], dtype=torch.float64,
                             device=next(model.parameters()).device)
        broadcast(value, src=0)  # every rank decides on rank 0's number
        series = self.series.setdefault(token, {'steps': [], 'values': [], 'moved': []})
        rows = concept_rows(model, [token])
        if not series['steps']:  # where this concept's rows start from
            self._start_rows[token] = rows
        series['steps'].append(self.queue.steps[concept])
        series['values'].append(float(value))
        if token in self._start_rows and 'moved' in series:
            series['moved'].append(distance_moved(self._start_rows[token], rows,
                                                  word_size(model, [token], self._word_norms)))
        self._changed = True

    def _outputs(self, runner, concepts: list[int]) -> None:
        if is_main_process():
            model, tokens = unwrap_model(runner.model), [self.tokens[c] for c in concepts]
            write_concept_outputs(runner, model, tokens, self.series, self.stops)
            if self._evaluator is not None:  # kept with the stop: checkpoints carry it
                for token in tokens:
                    try:
                        self.stops[token]['similarity'] = self._evaluator(model, token)
                    except NonFiniteRenderError as err:  # no number from black images
                        print_log(f'{token}: not evaluated: {err}', logger='current',
                                  level=logging.WARNING)

    def _build_evaluator(self, runner) -> ConceptEvaluator | None:
        evaluation = runner.cfg.get('evaluation')
        if not evaluation:
            print_log('ConceptQueueHook(evaluate=...): the config has no evaluation block; the '
                      'concepts are not evaluated.', logger='current', level=logging.WARNING)
            return None
        overrides = self.evaluate if isinstance(self.evaluate, dict) else {}
        return ConceptEvaluator(dict(evaluation), overrides,
                                runner.train_dataloader.dataset.concepts)

    def summary_rows(self) -> list[dict]:
        rows = []
        for concept, token in enumerate(self.tokens):
            series = self.series.get(token) or {'values': []}
            rows.append({'concept': token, 'status': self.queue.status[concept],
                         'steps': self.queue.steps[concept],
                         'stop': stop_text(self.stops.get(token)),
                         'signal_start': series['values'][0] if series['values'] else None,
                         'signal_end': series['values'][-1] if series['values'] else None,
                         **(self.stops.get(token) or {}).get('similarity', {})})
        return rows

    def state(self) -> dict:
        return {'tokens': list(self.tokens), 'interval': self.interval,
                'num_samples': self.num_samples,
                'rule': self.rule.describe() if self.rule else None, 'max_steps': self.max_steps,
                'queue': self.queue.state(), 'series': self.series, 'stops': self.stops}

    def _write(self, runner) -> None:
        self._changed = False
        if is_main_process():
            with atomic_write(Path(runner.work_dir) / QUEUE_FILE) as tmp:
                tmp.write_text(json.dumps(self.state(), indent=1) + '\n', encoding='utf-8')

    # ------------------------------------------------------- checkpoints
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['concept_queue'] = json.loads(json.dumps(self.state()))
        checkpoint['concept_queue_start_rows'] = dict(self._start_rows)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get('concept_queue')
        if not saved or not runner.cfg.get('resume'):
            return  # nothing saved, or a weights-only load_from: the queue starts afresh
        self._attach(runner)
        if saved['tokens'] != self.tokens:
            raise ValueError(f'The checkpoint trained the concepts {saved["tokens"]}; this config '
                             f'lists {self.tokens}. Resume with the config it was trained with.')
        self.queue.load_state(saved['queue'])
        self.series = saved['series']
        self.stops = saved['stops']
        starts = checkpoint.get('concept_queue_start_rows') or {}
        self._start_rows = {token: rows.float() for token, rows in starts.items()}
        for token, series in self.series.items():
            if token not in self._start_rows or len(series.get('moved', ())) != len(series['steps']):
                series.pop('moved', None)  # saved before the rows were tracked: the signal judges
                self._start_rows.pop(token, None)
        if self.queue.done:  # cut off before its end: write the outputs, train nothing
            runner.train_loop.stop_training = True


def stop_text(stop: dict | None) -> str | None:
    """Why a concept ended, as the summary says it (a concept that did not learn, first)."""
    if not stop:
        return None
    return ('NOT learned: ' if stop.get('kind') == 'not_learning' else '') + stop['reason']
