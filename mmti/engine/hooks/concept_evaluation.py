"""The similarity of a concept finished in a many-concept run, measured as
tools/evaluate.py measures it (``ConceptQueueHook(evaluate=...)``)."""
import logging
import time
from pathlib import Path

from mmengine.logging import print_log

from mmti.datasets.evaluation_inputs import concept_inputs

#: Keys of the config's ``evaluation`` block (and of the hook's overrides) used here.
SETTING_KEYS = ('clip', 'num_samples', 'steps', 'size', 'guidance_scale',
                'reconstruct_held_out_captions', 'reconstruction_prompt', 'edit_prompts')
#: What the summary table takes of :func:`~mmti.evaluation.concept_numbers`.
SUMMARY_KEYS = ('image_similarity', 'text_similarity', 'gap_closed', 'text_ratio')


class ConceptEvaluator:
    """Evaluates one concept of the run with the protocol of tools/evaluate.py.

    Each concept is rendered with its own token and ``initializer_token``
    and compared with its own ``data_root`` and ``held_out_dir``; the
    settings are the config's ``evaluation`` block, with ``overrides`` on
    top (e.g. fewer samples during training).

    Args:
        evaluation: The config's ``evaluation`` block.
        overrides: Settings that replace the block's.
        concepts: The run's concept list (``ConceptListDataset.concepts``).
        where: Who measures, for messages.
        log_folders: Log each folder's "using N images" line when it is read.
    """

    def __init__(self, evaluation: dict, overrides: dict, concepts: list[dict],
                 where: str = 'ConceptQueueHook evaluate', log_folders: bool = True):
        settings = {**evaluation, **overrides}
        shared_folders = [k for k in ('concept_dir', 'held_out_dir') if settings.get(k) is not None]
        for key in ('concept_dir', 'held_out_dir'):  # None: "each concept's own"
            settings.pop(key, None)
        if shared_folders:
            raise ValueError(f'evaluation.{shared_folders[0]} is set, but a many-concept run '
                             'takes its folders from each concept: set data_root and '
                             'held_out_dir in each concept of the list instead.')
        unknown = sorted(set(settings) - set(SETTING_KEYS))
        if unknown:
            raise ValueError(f'{where}: unknown evaluation settings {unknown}; '
                             f'known: {list(SETTING_KEYS)}.')
        if not settings.get('clip') or not (Path(settings['clip']) / 'config.json').is_file():
            raise ValueError(f'{where}: evaluation.clip {settings.get("clip")!r}'
                             ' is not a local CLIP model folder (no config.json).')
        self.reconstruct = bool(settings.pop('reconstruct_held_out_captions', False))
        for position, concept in enumerate(concepts):
            if self.reconstruct and not concept.get('held_out_dir'):
                raise ValueError(f'evaluation.reconstruct_held_out_captions needs held_out_dir in '
                                 f'every concept; concepts[{position}] '
                                 f'({concept["placeholder_token"]}) has none.')
        self.clip = settings.pop('clip')
        self.where = where
        from mmti.evaluation.protocol import check_protocol_numbers
        check_protocol_numbers(settings, lambda key: f'{where}: {key} (evaluation.{key}, or its '
                                                     'override)')
        self.protocol = settings  # evaluate_concept's keywords
        self.concepts = {c['placeholder_token']: c for c in concepts}
        self._scorer = None
        self._log_folders = log_folders
        self._inputs: dict[str, dict] = {}
        # The initializer and held-out rows come from the frozen model and the
        # images alone: measured at a concept's first evaluation, then reused.
        self._baselines: dict[str, dict] = {}

    def __call__(self, model, token: str, keys: tuple[str, ...] = SUMMARY_KEYS) -> dict:
        """``{image_similarity, text_similarity, gap_closed, text_ratio}`` of ``token``
        (``keys`` of :func:`~mmti.evaluation.concept_numbers`)."""
        from mmti.evaluation import ClipScorer, concept_numbers, evaluate_concept
        started = time.perf_counter()
        if self._scorer is None:  # loaded once, when the first concept is done
            self._scorer = ClipScorer(self.clip, device=str(next(model.parameters()).device))
        concept = self.concepts[token]
        if token not in self._inputs:
            self._inputs[token] = concept_inputs(
                concept['data_root'], concept.get('held_out_dir'), self.reconstruct,
                log=self._log_folders,
                names={'concept_dir': f'{self.where}: the training folder of {token}',
                       'held_out_dir': f'{self.where}: the held-out folder of {token} '
                                       '(evaluation.held_out_dir, or held_out_dir in its concept)',
                       'reconstruct': f'{self.where}: evaluation.reconstruct_held_out_captions'})
        inputs = dict(self._inputs[token])
        baselines = self._baselines.get(token)
        if baselines is not None:  # render the learned rows only
            inputs['held_out_images'] = None
        rows = evaluate_concept(model, self._scorer, token, initializer_word=None if baselines
                                is not None else concept.get('initializer_token'),
                                **{**self.protocol, **inputs})
        if baselines is None:
            baselines = self._baselines[token] = {k: v for k, v in rows.items() if k != 'learned'}
        numbers = concept_numbers({**rows, **baselines})
        print_log(f'Evaluated {token} in {time.perf_counter() - started:.1f} s: image similarity '
                  f'{numbers["image_similarity"]:.4f}, text similarity '
                  f'{numbers["text_similarity"]:.4f}', logger='current', level=logging.INFO)
        return {key: numbers.get(key) for key in keys}
