"""The paper's evaluation (:func:`evaluate_concept`) as an mmengine test loop.

``runner.test()`` with

* ``test_dataloader.dataset = dict(type='ConceptEvaluationPrompts', ...)``:
  one item, the evaluation request (the prompt templates to render);
* ``test_evaluator = dict(type='ConceptSimilarityMetric', clip=..., ...)``:
  renders the request's prompts with the runner's model and measures them in
  CLIP space, with the protocol of :mod:`mmti.evaluation.protocol` (no second
  copy of it here);
* ``custom_hooks = [dict(type='ConceptSimilarityHook')]``: hands the runner's
  model to the metric (mmengine's metrics see model outputs only, and the
  protocol renders its own images).

The model's ``test_step`` passes an evaluation request through unrendered.
mmti/cli/test.py (``tools/test.py``) fills these from a config's
``evaluation`` block.
"""
import json
from collections.abc import Sequence

from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook

from mmti.registry import DATASETS, HOOKS, METRICS

from .protocol import EDIT_PROMPTS, RECONSTRUCTION_PROMPT, evaluate_concept, verdict

#: The key of the one item :class:`ConceptEvaluationPrompts` yields.
REQUEST_KEY = 'concept_evaluation'


@DATASETS.register_module()
class ConceptEvaluationPrompts:
    """One item: the prompt templates the evaluation renders.

    Args:
        reconstruction_prompt: Template(s) compared with the training images.
        edit_prompts: Templates compared with their own text.
    """

    def __init__(self, reconstruction_prompt: str | Sequence[str] = RECONSTRUCTION_PROMPT,
                 edit_prompts: Sequence[str] = EDIT_PROMPTS) -> None:
        if isinstance(reconstruction_prompt, str):
            reconstruction_prompt = [reconstruction_prompt]
        self.request = {'reconstruction_prompt': list(reconstruction_prompt),
                        'edit_prompts': list(edit_prompts)}
        self.metainfo: dict = {}

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        if index != 0:
            raise IndexError(index)
        # As JSON text: mmengine's collate would turn a dict of lists inside out.
        return {REQUEST_KEY: json.dumps(self.request)}


@METRICS.register_module()
class ConceptSimilarityMetric(BaseMetric):
    """Image and text similarity of the learned concept (Gal et al. 2022, Fig. 10).

    The metrics are the ``learned`` row's ``image_similarity`` and
    ``text_similarity``, the baselines' as ``<row>/<name>`` (``initializer``,
    ``image_only``), and the :func:`verdict` line.

    Args:
        clip: Local folder of the CLIP model that measures.
        concept_dir: Folder of the training images.
        held_out_dir: Folder of held-out real images ("image only" row).
        placeholder: Token to evaluate; default: the model's.
        initializer: Plain word of the baseline row; None skips it.
        num_samples, steps, size, guidance_scale, seed: As
            :func:`evaluate_concept`.
        device: Where CLIP runs; default: the model's device.
    """

    default_prefix = ''  # keys as tools/evaluate.py names them

    def __init__(self, clip: str, concept_dir: str, held_out_dir: str | None = None,
                 placeholder: str | None = None, initializer: str | None = None,
                 num_samples: int = 8, steps: int = 25, size: int | None = None,
                 guidance_scale: float = 7.5, seed: int = 0, device: str | None = None,
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.clip, self.concept_dir, self.held_out_dir = clip, concept_dir, held_out_dir
        self.placeholder, self.initializer = placeholder, initializer
        self.settings = dict(num_samples=num_samples, steps=steps, size=size,
                             guidance_scale=guidance_scale, seed=seed)
        self.device = device
        self.model = None  # set by ConceptSimilarityHook (or by hand)
        self.rows: dict | None = None  # the last evaluation's rows, for callers

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep the evaluation requests the model passed through."""
        for sample in data_samples:
            if isinstance(sample, dict) and REQUEST_KEY in sample:
                self.results.append(json.loads(sample[REQUEST_KEY]))

    def compute_metrics(self, results: list) -> dict:
        if self.model is None:
            raise RuntimeError('ConceptSimilarityMetric has no model: add '
                               "custom_hooks=[dict(type='ConceptSimilarityHook')] or set .model.")
        if not results:
            raise ValueError('the test dataloader yielded no evaluation request; use '
                             "dataset=dict(type='ConceptEvaluationPrompts').")
        from mmti.datasets.textual_inversion_dataset import list_concept_images, load_rgb

        from .clip_scorer import ClipScorer

        def images(folder):
            return [load_rgb(f) for f in list_concept_images(folder)]

        model = self.model
        device = self.device or str(next(model.parameters()).device)
        scorer = ClipScorer(self.clip, device=device)
        placeholder = self.placeholder or model.placeholder_token
        rows = evaluate_concept(
            model, scorer, placeholder, images(self.concept_dir),
            held_out_images=images(self.held_out_dir) if self.held_out_dir else None,
            initializer_word=self.initializer or None, **self.settings, **results[0])
        self.rows = rows
        metrics = {}
        for name, row in rows.items():
            head = '' if name == 'learned' else name.replace(' ', '_') + '/'
            metrics[f'{head}image_similarity'] = row['image_similarity']
            metrics[f'{head}text_similarity'] = row['text_similarity']
        metrics['verdict'] = verdict(rows)
        return metrics


@HOOKS.register_module()
class ConceptSimilarityHook(Hook):
    """Give the test loop's :class:`ConceptSimilarityMetric` the runner's model."""

    def before_test(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        for metric in runner.test_loop.evaluator.metrics:
            if isinstance(metric, ConceptSimilarityMetric):
                metric.model = model
