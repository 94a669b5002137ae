"""Image and text similarity of the concept while it trains, for curves.png."""
import json
import logging
from pathlib import Path

from mmengine.dist import is_main_process
from mmengine.logging import print_log

from mmti.datasets.evaluation_inputs import resolve_held_out_dir
from mmti.evaluation import verdict
from mmti.fileio import atomic_write
from mmti.registry import HOOKS
from mmti.utils import NonFiniteRenderError
from .concept_evaluation import ConceptEvaluator
from .periodic_hook import PeriodicHook, unwrap_model

SIMILARITY_FILE = 'similarity.json'
#: What each measurement keeps (see :func:`~mmti.evaluation.concept_numbers`).
SERIES_KEYS = ('image_similarity', 'text_similarity', 'gap_closed', 'text_ratio',
               'initializer_image_similarity', 'initializer_text_similarity',
               'image_only_image_similarity')


@HOOKS.register_module()
class SimilarityCurveHook(PeriodicHook):
    """Measure the concept as tools/evaluate.py does, at the start, every
    ``interval`` steps and at the end, when the config has an ``evaluation``
    block; keep the series in ``<work_dir>/similarity.json`` for
    ``curves.png`` and log the last measurement.

    The settings are the config's ``evaluation`` block with ``overrides`` on
    top: fewer samples per prompt than a final evaluation, so the curve costs
    seconds, not minutes. The initializer's and held-out images' rows are
    measured once. A single-concept run only (a many-concept run measures
    each concept when it stops: ``ConceptQueueHook(evaluate=...)``); without
    an ``evaluation`` block the hook does nothing. Renders use their own
    seeded generator, so training is the same with the hook as without.

    Args:
        interval: Steps between measurements; 0 or less: at the start and
            the end only.
        overrides: Settings that replace the ``evaluation`` block's, e.g.
            ``dict(num_samples=2)``.
    """

    # Before CurvesHook (LOWEST) and the checkpoint hook (VERY_LOW): a
    # checkpoint and the curves drawn at a step include that step's numbers.
    priority = 'LOW'

    def __init__(self, interval: int = 0, overrides: dict | None = None):
        super().__init__(interval)
        self.overrides = dict(overrides or {})
        self.series: list[dict] = []
        self._evaluator = None
        self._token = None
        self._held_out_dir = None

    def before_train(self, runner) -> None:
        self._evaluator = self._build_evaluator(runner) if is_main_process() else None
        if self._evaluator is not None and not self.series:  # a fresh run: the starting rows
            self._act_on_main(runner, runner.iter, final=False)
        elif self._evaluator is not None:  # resumed: the file says what the checkpoint holds
            self._write(runner)

    def _build_evaluator(self, runner) -> ConceptEvaluator | None:
        evaluation = runner.cfg.get('evaluation')
        dataset = runner.train_dataloader.dataset
        model = unwrap_model(runner.model)
        if not evaluation or hasattr(dataset, 'concepts') or len(model.placeholder_tokens) != 1:
            return None
        settings = dict(evaluation)
        folders = {key: settings.pop(key, None) for key in ('concept_dir', 'held_out_dir')}
        folders['concept_dir'] = folders['concept_dir'] or dataset.data_root
        folders['held_out_dir'] = resolve_held_out_dir(folders['held_out_dir'],
                                                       folders['concept_dir'])
        for key, folder in folders.items():
            if folder is not None and not Path(folder).is_dir():
                raise ValueError(
                    f'evaluation.{key} {folder} is not a folder. The similarity curves '
                    f'(default_hooks.similarity) measure the concept against it: set '
                    f'evaluation.{key} to a folder of images of this concept, '
                    f'evaluation.{key}=None, or default_hooks.similarity=None.')
        self._token = model.placeholder_token
        concept = dict(placeholder_token=self._token,
                       initializer_token=runner.cfg.model.get('initializer_token'),
                       data_root=folders['concept_dir'],
                       held_out_dir=folders['held_out_dir'])
        self._held_out_dir = concept['held_out_dir']
        # Training has named the training folder; the end line names the held-out one.
        return ConceptEvaluator(settings, self.overrides, [concept], where='default_hooks.similarity',
                                log_folders=False)

    def act(self, runner, model, step: int, final: bool) -> None:
        if self._evaluator is None:
            return  # no evaluation block, or not a single-concept run
        if not self.series or self.series[-1]['step'] != step:  # not measured at this step yet
            try:
                numbers = self._evaluator(model, self._token, keys=SERIES_KEYS)
            except NonFiniteRenderError as err:  # no number is better than a black image's
                runner.logger.warning(f'Similarity at step {step} not measured: {err}')
                return
            self.series.append({'step': step, **numbers})
            self._write(runner)
        if final:
            point = self.series[-1]
            count = self._evaluator.protocol.get('num_samples', 8)  # evaluate_concept's default
            against = (f', against the held-out images in {self._held_out_dir}'
                       if self._held_out_dir else '')
            print_log(f'Similarity at step {step}: image similarity {point["image_similarity"]:.4f}, '
                      f'text similarity {point["text_similarity"]:.4f}; {verdict(as_rows(point))} '
                      f'Measured with {count} sample(s) per prompt{against}; tools/evaluate.py '
                      'measures with the evaluation block\'s own.', logger='current',
                      level=logging.INFO)

    def _write(self, runner) -> None:
        with atomic_write(Path(runner.work_dir) / SIMILARITY_FILE) as tmp:
            tmp.write_text(json.dumps({'token': self._token, 'settings': self.overrides,
                                       'series': self.series}, indent=1) + '\n',
                           encoding='utf-8')

    # ------------------------------------------------------ checkpoints
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['similarity_curve'] = [dict(point) for point in self.series]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not runner.cfg.get('resume'):
            return  # a weights-only load_from: a fresh series
        step = checkpoint['meta'].get('iter', 0)
        self.series = [p for p in checkpoint.get('similarity_curve') or [] if p['step'] <= step]


def as_rows(point: dict) -> dict:
    """One measurement as :func:`~mmti.evaluation.evaluate_concept`'s rows (what was measured)."""
    rows = {'learned': {'image_similarity': point['image_similarity'],
                        'text_similarity': point['text_similarity']}}
    if point.get('initializer_image_similarity') is not None:
        rows['initializer'] = {'image_similarity': point['initializer_image_similarity'],
                               'text_similarity': point['initializer_text_similarity']}
    if point.get('image_only_image_similarity') is not None:
        rows['image only'] = {'image_similarity': point['image_only_image_similarity']}
    return rows


def read_similarity(work_dir: str | Path) -> list[dict]:
    """The series :class:`SimilarityCurveHook` keeps in the work dir (empty if none)."""
    try:
        return json.loads((Path(work_dir) / SIMILARITY_FILE).read_text(encoding='utf-8'))['series']
    except (OSError, ValueError, KeyError, TypeError):
        return []
