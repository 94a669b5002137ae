"""Evaluate a trained concept through mmengine's runner (``runner.test()``).

    python tools/test.py configs/textual_inversion_toy.py \\
        work_dirs/textual_inversion_toy/iter_600.pth
    python tools/test.py configs/textual_inversion_toy.py \\
        work_dirs/textual_inversion_toy/learned_embeds.safetensors \\
        --cfg-options evaluation.num_samples=2 evaluation.steps=2

CHECKPOINT is a training checkpoint (``iter_N.pth``, loaded by the runner's
``load_from``) or an embedding file (``learned_embeds*.safetensors``, loaded
with the model's ``load_embeddings``). The config's ``evaluation`` block (the
settings tools/evaluate.py reads) becomes the test loop: one evaluation
request as ``test_dataloader``, :class:`~mmti.evaluation.ConceptSimilarityMetric`
as ``test_evaluator``, the protocol of :mod:`mmti.evaluation.protocol`. The
metrics are logged by the runner and written to ``<work-dir>/metrics.json``.
A config without an ``evaluation`` block, or bad settings, is refused with
one line (exit status 2).
"""
import argparse
import json
import os.path as osp
from pathlib import Path

from mmengine.config import Config

from mmti.fileio import atomic_write, read_embedding_file
from mmti.engine import load_user_config
from mmti.utils import UserError, add_cfg_options, prog_name, run_cli

from .evaluate import (apply_config_defaults, check_numbers, held_out_captions, image_files,
                       sampling_bar, sampling_total)

PROG = prog_name('tools/test.py')
EMBEDDING_SUFFIXES = ('.safetensors', '.bin', '.pt')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description='Evaluate a trained concept with the runner (CLIP similarity)')
    parser.add_argument('config', help='the training config, with an evaluation block')
    parser.add_argument('checkpoint',
                        help='iter_N.pth of the run, or a learned_embeds*.safetensors file')
    parser.add_argument('--work-dir', help='where the log and metrics.json go '
                        '(default: work_dirs/<config name>/test)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the renders')
    add_cfg_options(parser, help='override config entries, e.g. evaluation.num_samples=2')
    return parser.parse_args(argv)


def evaluation_settings(cfg: Config, config_path: str) -> argparse.Namespace:
    """The config's evaluation block resolved as tools/evaluate.py resolves it."""
    if not cfg.get('evaluation'):
        raise UserError(f'config {config_path} has no evaluation settings; add an evaluation '
                        "block (e.g. evaluation = dict(clip='data/toy/clip_eval', "
                        'held_out_dir=...), see configs/textual_inversion_toy.py) or use '
                        'tools/evaluate.py with --clip.')
    settings = argparse.Namespace(config=config_path,
                                  **{key: None for key in ('clip', 'concept_dir', 'held_out_dir',
                                                           'num_samples', 'steps', 'size',
                                                           'guidance_scale',
                                                           'reconstruct_held_out_captions')})
    settings.prompts = apply_config_defaults(settings, cfg)
    check_numbers(settings)
    # Checked before the runner starts; the metric lists (and logs) them when it runs.
    image_files(settings.concept_dir, 'evaluation.concept_dir', log=False)
    if settings.held_out_dir:
        image_files(settings.held_out_dir, 'evaluation.held_out_dir', log=False)
    if settings.reconstruct_held_out_captions:
        settings.prompts['reconstruction_prompt'] = held_out_captions(settings.held_out_dir)
    clip = Path(settings.clip)
    if not (clip / 'config.json').is_file():
        raise UserError(f'evaluation.clip {settings.clip} is not a local CLIP model folder '
                        '(no config.json).')
    return settings


def build_test_config(args: argparse.Namespace) -> tuple[Config, argparse.Namespace]:
    """The config with its evaluation block as test_dataloader/evaluator/cfg."""
    cfg = load_user_config(args.config, args.cfg_options)
    settings = evaluation_settings(cfg, args.config)
    cfg.work_dir = args.work_dir or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0], 'test')
    cfg.test_dataloader = dict(
        batch_size=1, num_workers=0, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='ConceptEvaluationPrompts', **settings.prompts))
    cfg.test_evaluator = dict(
        type='ConceptSimilarityMetric', clip=settings.clip, concept_dir=settings.concept_dir,
        held_out_dir=settings.held_out_dir,
        initializer=cfg.model.get('initializer_token') or None,
        num_samples=settings.num_samples, steps=settings.steps, size=settings.size,
        guidance_scale=settings.guidance_scale, seed=args.seed)
    cfg.test_cfg = dict(type='TestLoop')
    cfg.custom_imports = dict(imports=[*cfg.get('custom_imports', {}).get('imports', []),
                                       'mmti.evaluation'], allow_failed_imports=False)
    cfg.custom_hooks = [*(cfg.get('custom_hooks') or []), dict(type='ConceptSimilarityHook')]
    # Testing neither trains nor resumes: the training hooks' outputs stay out of the work dir.
    for name in ('checkpoint', 'embedding_save', 'validation_samples', 'curves', 'progress'):
        if name in (cfg.get('default_hooks') or {}):
            cfg.default_hooks[name] = None
    cfg.resume = False
    is_embedding = args.checkpoint.endswith(EMBEDDING_SUFFIXES)
    cfg.load_from = None if is_embedding else args.checkpoint
    return cfg, settings


def test_with_progress(runner, settings: argparse.Namespace) -> dict:
    """``runner.test()`` with one progress bar over the images the metric renders.

    The test loop (built here through the runner's public ``test_loop``, and
    reused by ``runner.test()``) holds the metric; its ``settings`` are the
    keyword arguments it hands to :func:`~mmti.evaluation.evaluate_concept`,
    whose ``progress`` callback advances the bar.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from mmti.evaluation import ConceptSimilarityMetric
    metrics = [m for m in runner.test_loop.evaluator.metrics
               if isinstance(m, ConceptSimilarityMetric)]
    total = sum(sampling_total(settings.num_samples, settings.prompts, m.initializer)
                for m in metrics)
    # The runner's log lines go above the bar instead of through it.
    with sampling_bar(total, 'test: sampling') as bar, logging_redirect_tqdm([runner.logger]):
        for metric in metrics:
            metric.settings['progress'] = bar.update
        try:
            return runner.test()
        finally:
            for metric in metrics:
                metric.settings.pop('progress', None)


def main(argv: list[str] | None = None) -> dict:
    """Evaluate; returns the metrics written. Errors propagate (see :func:`cli`)."""
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise UserError(f'checkpoint {args.checkpoint} does not exist; pass an iter_N.pth of the '
                        'run or a learned_embeds.safetensors.')
    from mmti.engine.console import quiet_library_notices
    quiet_library_notices()  # before the config's imports load transformers' models
    cfg, settings = build_test_config(args)
    is_embedding = cfg.load_from is None
    if is_embedding:
        read_embedding_file(args.checkpoint)  # damaged, empty or NaN: refused before loading

    from mmti.engine import build_runner
    runner = build_runner(cfg)
    if is_embedding:
        loaded = runner.model.load_embeddings(args.checkpoint)
        runner.logger.info(f'Loaded {loaded} from {args.checkpoint}')
    metrics = test_with_progress(runner, settings)
    for key, value in metrics.items():
        print(f'{key}: {value:.4f}' if isinstance(value, float) else f'{key}: {value}')
    out = Path(runner.work_dir) / 'metrics.json'
    written = {'metrics': metrics,
               'settings': dict(config=args.config, checkpoint=args.checkpoint,
                                clip=settings.clip, concept_dir=settings.concept_dir,
                                held_out_dir=settings.held_out_dir,
                                num_samples=settings.num_samples, steps=settings.steps,
                                size=settings.size, guidance_scale=settings.guidance_scale,
                                seed=args.seed, **settings.prompts)}
    with atomic_write(out) as tmp:
        tmp.write_text(json.dumps(written, indent=2) + '\n')
    print(f'Wrote {out}')
    return written


def cli(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit status 2."""
    run_cli(PROG, main, argv)


if __name__ == '__main__':
    cli()
