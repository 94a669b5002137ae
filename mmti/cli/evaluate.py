"""Evaluate a learned embedding as in the Textual Inversion paper (Fig. 10).

Renders "a photo of <token>" and a set of edit prompts with the learned
token and with the initializer word, then measures in CLIP space

* image similarity (reconstruction): samples vs the training images,
* text similarity (editability): edit samples vs their prompts without the
  placeholder,

plus the "image only" point (held-out real images) when ``--held-out-dir``
is given. Writes ``metrics.json`` and ``similarity.png`` to ``--out-dir``.

A config may carry an ``evaluation`` dict whose keys (``clip``,
``concept_dir``, ``held_out_dir``, ``num_samples``, ``steps``, ``size``,
``guidance_scale``, ``reconstruct_held_out_captions``, ``reconstruction_prompt``,
``edit_prompts``) are the defaults of the options of the same names; a model
trained on its own kind of captions (the toy world's) brings its prompts
there. ``--concept-dir`` defaults to the config's training folder.

``--reconstruct-held-out-captions`` renders, instead of one reconstruction
prompt, the caption of every held-out image (``<name>.txt`` beside it, with
``{}`` for the concept): the generated rows then show the very scenes of the
"image only" row and differ from it only in how the concept is drawn.

    python tools/evaluate.py configs/textual_inversion.py \
        --embeddings work_dirs/textual_inversion/learned_embeds.safetensors \
        --clip /models/clip-vit-base-patch32 --concept-dir data/cat_toy \
        --num-samples 8 --steps 25 --out-dir work_dirs/eval

A many-concept config (``model = dict(concepts=[...])``) evaluates every
concept of its list in one call, with the same protocol and settings: each
with its own ``data_root``, ``held_out_dir`` and ``initializer_token``, from
the run's combined ``learned_embeds.safetensors`` (or its work dir).
``metrics.json`` then holds one line per concept (``concepts``: the
similarities, the baselines, gap closed, text ratio, verdict and the folders
used) and ``similarity_<concept>.png`` one plot each; ``--placeholder``
evaluates one concept of the list.

    python tools/evaluate.py configs/textual_inversion_toy_concepts.py \
        --embeddings work_dirs/textual_inversion_toy_concepts --out-dir work_dirs/eval_concepts

Bad input (a missing folder or CLIP model, a folder without images, numbers
out of range, an evaluation block that is not a dict, a damaged embedding file,
an output folder that cannot be written) is refused with one line, exit status
2, before CLIP or the diffusion model loads; ``--debug`` shows the traceback.
Images are read as training reads them (EXIF orientation applied,
transparency on white).
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from mmengine.config import Config

from mmti.datasets.concept_specs import check_concept_list, concept_folder_name
from mmti.datasets.evaluation_inputs import (concept_inputs, held_out_captions,  # noqa: F401
                                             image_files, load_images, resolve_held_out_dir)
from mmti.engine import load_user_config  # noqa: E402
from mmti.fileio import atomic_write, check_output_dir, read_embedding_file  # noqa: E402
from mmti.registry import MODELS  # noqa: E402
from mmti.utils import UserError, add_cfg_options, check_device, prog_name, run_cli  # noqa: E402

PROG = prog_name('tools/evaluate.py')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description='CLIP image/text similarity of a learned embedding')
    parser.add_argument('config', help='the training config (names the base model)')
    parser.add_argument('--embeddings', required=True,
                        help='learned_embeds.safetensors (or folder)')
    parser.add_argument('--clip', default=None,
                        help='local folder of a CLIP model (e.g. openai/clip-vit-base-patch32); '
                             "default: the config's evaluation.clip")
    parser.add_argument('--concept-dir', default=None,
                        help="folder of the training images; default: the config's data_root")
    parser.add_argument('--held-out-dir', default=None,
                        help='folder of real images of the concept not used in training')
    parser.add_argument('--placeholder', default=None,
                        help="token to evaluate; default: the config's, or the file's only one")
    parser.add_argument('--initializer', default=None,
                        help="plain word for the baseline row; default: the config's "
                             "initializer_token; '' skips the row")
    parser.add_argument('--num-samples', type=int, default=None,
                        help='images per prompt (default 8)')
    parser.add_argument('--steps', type=int, default=None, help='denoising steps (default 25)')
    parser.add_argument('--size', type=int, default=None, help='render size (default: native)')
    parser.add_argument('--guidance-scale', type=float, default=None,
                        help='classifier-free guidance of the renders (default 7.5)')
    parser.add_argument('--reconstruct-held-out-captions', action='store_true', default=None,
                        help="render each held-out image's caption file instead of the "
                             'reconstruction prompt')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out-dir', default='work_dirs/evaluate', help='where results go')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    add_cfg_options(parser)
    return parser.parse_args(argv)


def sampling_total(num_samples: int, prompts: dict, initializer: str | None) -> int:
    """How many images :func:`evaluate_concept` renders (the progress bar's total).

    ``prompts`` holds what the config sets of ``reconstruction_prompt`` and
    ``edit_prompts``; the protocol's defaults fill the rest.
    """
    from mmti.evaluation import EDIT_PROMPTS, RECONSTRUCTION_PROMPT
    recon = prompts.get('reconstruction_prompt', RECONSTRUCTION_PROMPT)
    per_row = num_samples * ((1 if isinstance(recon, str) else len(recon))
                             + len(prompts.get('edit_prompts', EDIT_PROMPTS)))
    return per_row * (2 if initializer else 1)


def sampling_bar(total: int, desc: str):
    """The evaluation's progress bar (tqdm on stderr), counting rendered images."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='img', file=sys.stderr, mininterval=1.0)


def markdown_table(rows: dict[str, dict]) -> str:
    lines = ['| row | image similarity | text similarity | images |',
             '|---|---:|---:|---:|']
    for name, row in rows.items():
        lines.append(f"| {name} | {row['image_similarity']:.4f} | "
                     f"{row['text_similarity']:.4f} | {row['num_images']} |")
    return '\n'.join(lines)


EVALUATION_DEFAULTS = dict(clip=None, concept_dir=None, held_out_dir=None, num_samples=8,
                           steps=25, size=None, guidance_scale=7.5,
                           reconstruct_held_out_captions=False)


def apply_config_defaults(args: argparse.Namespace, cfg: Config,
                          concepts: list[dict] | None = None) -> dict:
    """Fill options left unset from ``cfg.evaluation``; return its prompt settings.

    With ``concepts`` (a many-concept config's list) the folders and the
    initializer word come from each concept's entry, so none may be given
    for all of them.
    """
    evaluation = cfg.get('evaluation') or {}
    if not isinstance(evaluation, dict):
        raise UserError(f'config {args.config}: evaluation is a {type(evaluation).__name__}; '
                        "write it as a dict, e.g. evaluation = dict(clip='/models/clip').")
    evaluation = dict(evaluation)
    unknown = set(evaluation) - set(EVALUATION_DEFAULTS) - {'reconstruction_prompt',
                                                            'edit_prompts'}
    if unknown:
        known = sorted([*EVALUATION_DEFAULTS, 'reconstruction_prompt', 'edit_prompts'])
        raise UserError(f'config evaluation has unknown keys {sorted(unknown)}; known: {known}.')
    for key, default in EVALUATION_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, evaluation.get(key, default))
    if concepts:
        given = [name for name, value in (('concept_dir', args.concept_dir),
                                          ('held_out_dir', args.held_out_dir),
                                          ('initializer', getattr(args, 'initializer', None)))
                 if value is not None]
        if given:
            option = given[0]
            raise UserError(f'config {args.config} lists {len(concepts)} concepts, each with its '
                            f'own folders and initializer word: drop --{option.replace("_", "-")}'
                            f' (and evaluation.{option}); set data_root, held_out_dir and '
                            'initializer_token in each concept of the list.')
    else:
        if args.concept_dir is None:
            args.concept_dir = cfg.get('train_dataloader', {}).get('dataset', {}).get('data_root')
        args.held_out_dir = resolve_held_out_dir(args.held_out_dir, args.concept_dir)
    if args.clip is None:
        raise UserError('no CLIP model given: pass --clip FOLDER (a local copy of e.g. '
                        'openai/clip-vit-base-patch32) or set evaluation.clip in the config.')
    if args.concept_dir is None and not concepts:
        raise UserError('no training images given: pass --concept-dir FOLDER.')
    # Only what the config sets; evaluate_concept has the paper's defaults.
    return {key: (list(value) if key == 'edit_prompts' else value)
            for key, value in evaluation.items()
            if key in ('reconstruction_prompt', 'edit_prompts')}


def check_numbers(args: argparse.Namespace) -> None:
    """Refuse counts, sizes and scales (from the options or the config) out of range."""
    from mmti.evaluation.protocol import check_protocol_numbers
    check_protocol_numbers(vars(args), lambda key: f'--{key.replace("_", "-")} (or evaluation.{key})')


def config_concepts(cfg: Config) -> list[dict] | None:
    """A many-concept config's concept list (``model.concepts``); None for one concept."""
    concepts = cfg.get('model', {}).get('concepts')
    return None if concepts is None else check_concept_list(concepts, 'model.concepts')


def check_inputs(args: argparse.Namespace) -> None:
    """Refuse a bad output folder, embedding file or CLIP folder before anything loads."""
    check_output_dir(args.out_dir)
    if not Path(args.embeddings).exists():
        raise UserError(f'embeddings {args.embeddings} do not exist; pass --embeddings with a '
                        'learned_embeds.safetensors (or its folder).')
    read_embedding_file(args.embeddings)  # damaged, empty or NaN: refused before any loading
    clip = Path(args.clip)
    if not clip.is_dir():
        raise UserError(f'CLIP folder {args.clip} does not exist; pass --clip with a local '
                        'CLIP model folder (e.g. openai/clip-vit-base-patch32).')
    if not (clip / 'config.json').is_file():
        raise UserError(f'CLIP folder {args.clip} has no config.json (expected a local CLIP '
                        'model saved with save_pretrained, e.g. openai/clip-vit-base-patch32).')
    if not any(clip.glob('*.safetensors')) and not any(clip.glob('pytorch_model*.bin')):
        raise UserError(f'CLIP folder {args.clip} has no weights (model.safetensors or '
                        'pytorch_model.bin).')


def load_scorer_and_model(args: argparse.Namespace, cfg: Config) -> tuple:
    """CLIP, and the config's model with the embeddings loaded: (scorer, model, tokens)."""
    from mmti.engine.console import quiet_library_notices
    quiet_library_notices()  # before CLIP and the pipeline are imported and loaded
    from mmti.evaluation import ClipScorer
    try:
        scorer = ClipScorer(args.clip, device=args.device)
    except Exception as error:  # noqa: BLE001  (any loading failure: one line)
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f'cannot load CLIP from {args.clip}: {first_line}') from None
    import mmti.models  # noqa: F401  (registers TextualInversion)
    from mmti.models.concept_vocabulary import RowCountError
    model = MODELS.build(cfg.model).to(args.device)
    try:
        loaded = model.load_embeddings(args.embeddings)
    except RowCountError as error:  # on this command line the row count is an option
        raise UserError(f'cannot load {args.embeddings}: {error.problem}; pass --cfg-options '
                        f'model.num_vectors={error.rows}.') from None
    except (ValueError, KeyError, OSError) as error:
        raise UserError(f'cannot load {args.embeddings}: {error}') from None
    print(f'Loaded {loaded} from {args.embeddings}')
    return scorer, model, loaded


def resolved_prompts(prompts: dict) -> dict:
    """The prompt settings as rendered: the config's, the protocol's defaults for the rest."""
    from mmti.evaluation import EDIT_PROMPTS, RECONSTRUCTION_PROMPT
    return {'reconstruction_prompt': RECONSTRUCTION_PROMPT, 'edit_prompts': list(EDIT_PROMPTS),
            **prompts}


def main(argv: list[str] | None = None) -> dict:
    """Evaluate; returns the metrics written. Errors propagate (see :func:`cli`)."""
    args = parse_args(argv)
    if args.cfg_options:  # checking them imports the models, and transformers' notices
        from mmti.engine.console import quiet_library_notices
        quiet_library_notices()
    # Its custom imports (the models, hence transformers) wait until the inputs
    # are checked: a bad path should fail fast, with nothing but its error.
    cfg = load_user_config(args.config, args.cfg_options, import_custom_modules=False,
                           check_model=True)
    concepts = config_concepts(cfg)
    prompts = apply_config_defaults(args, cfg, concepts)
    check_numbers(args)
    check_inputs(args)
    check_device(args.device)
    if concepts:
        return evaluate_concept_list(args, cfg, concepts, prompts)
    inputs = concept_inputs(args.concept_dir, args.held_out_dir,
                            args.reconstruct_held_out_captions)
    training, held_out = inputs.pop('training_images'), inputs.pop('held_out_images')
    prompts.update(inputs)  # the held-out captions, when asked for

    scorer, model, loaded = load_scorer_and_model(args, cfg)
    from mmti.evaluation import evaluate_concept, scatter_plot, verdict
    placeholder = args.placeholder
    if placeholder is None:
        if model.placeholder_token in loaded:
            placeholder = model.placeholder_token
        elif len(loaded) == 1:
            placeholder = loaded[0]
        else:
            raise UserError(f'{args.embeddings} holds {loaded}; choose one with --placeholder.')
    elif placeholder not in model.concepts:
        raise UserError(f'--placeholder {placeholder!r} is not loaded (loaded: {loaded}).')
    initializer = (cfg.model.get('initializer_token') if args.initializer is None
                   else args.initializer) or None

    with sampling_bar(sampling_total(args.num_samples, prompts, initializer),
                      'evaluate: sampling') as bar:
        rows = evaluate_concept(model, scorer, placeholder, training, held_out_images=held_out,
                                initializer_word=initializer, num_samples=args.num_samples,
                                steps=args.steps, seed=args.seed, size=args.size,
                                guidance_scale=args.guidance_scale, progress=bar.update,
                                **prompts)
    print(markdown_table(rows))
    conclusion = verdict(rows)
    print(f'Verdict: {conclusion}')
    out = Path(args.out_dir)
    metrics = {
        'rows': rows,
        'verdict': conclusion,
        'settings': dict(config=args.config, embeddings=args.embeddings, clip=args.clip,
                         concept_dir=args.concept_dir, held_out_dir=args.held_out_dir,
                         placeholder=placeholder, initializer=initializer,
                         num_samples=args.num_samples, steps=args.steps, size=args.size,
                         guidance_scale=args.guidance_scale,
                         seed=args.seed, **resolved_prompts(prompts)),
    }
    with atomic_write(out / 'metrics.json') as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + '\n')
    scatter_plot(rows, out / 'similarity.png', title=placeholder)
    print(f'Wrote {out / "metrics.json"} and {out / "similarity.png"}')
    return metrics


def concepts_table(table: list[dict]) -> str:
    """The many-concept markdown table: one line per concept."""
    def number(value, percent=False):
        return '' if value is None else f'{value:.0%}' if percent else f'{value:.4f}'

    lines = ['| concept | image similarity | text similarity | initializer (image / text) | '
             'image only (image / text) | gap closed | text ratio | verdict |',
             '|---|---:|---:|---:|---:|---:|---:|---|']
    for row in table:
        baselines = [' / '.join(number(row.get(f'{name}_{kind}_similarity'))
                                for kind in ('image', 'text'))
                     if f'{name}_image_similarity' in row else ''
                     for name in ('initializer', 'image_only')]
        lines.append(f"| {row['concept']} | {number(row['image_similarity'])} | "
                     f"{number(row['text_similarity'])} | {baselines[0]} | {baselines[1]} | "
                     f"{number(row['gap_closed'], True)} | {number(row['text_ratio'], True)} | "
                     f"{row['verdict'].split(':')[0]} |")
    return '\n'.join(lines)


def evaluate_concept_list(args: argparse.Namespace, cfg: Config, concepts: list[dict],
                          prompts: dict) -> dict:
    """Evaluate every concept of a many-concept config, each with its own folders
    and initializer word, with the same protocol and settings; one table."""
    if args.placeholder is not None:
        concepts = [c for c in concepts if c['placeholder_token'] == args.placeholder]
        if not concepts:
            raise UserError(f'--placeholder {args.placeholder!r} is not in the config\'s concept '
                            'list; pass one of its placeholder_token values.')
    inputs = {}
    for position, concept in enumerate(concepts):
        token = concept['placeholder_token']
        if not concept.get('data_root'):
            raise UserError(f'model.concepts[{position}] ({token}) has no data_root, the folder '
                            'of its training images.')
        if args.reconstruct_held_out_captions and not concept.get('held_out_dir'):
            raise UserError(f'reconstruct_held_out_captions needs held_out_dir in every concept; '
                            f'model.concepts[{position}] ({token}) has none.')
        # Every concept's images are read before CLIP and the diffusion model load.
        inputs[token] = concept_inputs(concept['data_root'], concept.get('held_out_dir'),
                                       args.reconstruct_held_out_captions)

    scorer, model, loaded = load_scorer_and_model(args, cfg)
    from mmti.evaluation import concept_numbers, evaluate_concept, scatter_plot, verdict
    missing = [token for token in inputs if token not in loaded]
    if missing:
        raise UserError(f'{args.embeddings} holds {loaded}, not {missing}; pass the run\'s '
                        'learned_embeds.safetensors (all of its concepts) or its work dir.')
    own_prompts = {c['placeholder_token']: {**prompts, **{k: v for k, v in
                                                          inputs[c['placeholder_token']].items()
                                                          if k == 'reconstruction_prompt'}}
                   for c in concepts}
    total = sum(sampling_total(args.num_samples, own_prompts[c['placeholder_token']],
                               c.get('initializer_token')) for c in concepts)
    out = Path(args.out_dir)
    table, plots = [], []
    with sampling_bar(total, 'evaluate: sampling') as bar:
        for concept in concepts:
            token, initializer = concept['placeholder_token'], concept.get('initializer_token')
            rows = evaluate_concept(
                model, scorer, token, inputs[token]['training_images'],
                held_out_images=inputs[token]['held_out_images'], initializer_word=initializer,
                num_samples=args.num_samples, steps=args.steps, seed=args.seed, size=args.size,
                guidance_scale=args.guidance_scale, progress=bar.update, **own_prompts[token])
            table.append({'concept': token, **concept_numbers(rows), 'verdict': verdict(rows),
                          'concept_dir': concept['data_root'],
                          'held_out_dir': concept.get('held_out_dir'),
                          'initializer': initializer,
                          'reconstruction_prompt': own_prompts[token].get('reconstruction_prompt'),
                          'rows': rows})
            plots.append((rows, out / f'similarity_{concept_folder_name(token)}.png', token))
    print(concepts_table(table))
    shared = resolved_prompts(prompts)
    if args.reconstruct_held_out_captions:
        shared['reconstruction_prompt'] = 'the held-out captions of each concept'
    metrics = {
        'concepts': table,
        'settings': dict(config=args.config, embeddings=args.embeddings, clip=args.clip,
                         num_samples=args.num_samples, steps=args.steps, size=args.size,
                         guidance_scale=args.guidance_scale, seed=args.seed,
                         reconstruct_held_out_captions=args.reconstruct_held_out_captions,
                         **shared),
    }
    with atomic_write(out / 'metrics.json') as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + '\n')
    for rows, path, title in plots:
        scatter_plot(rows, path, title=title)
    print(f'Wrote {out / "metrics.json"} and {len(plots)} similarity_<concept>.png')
    return metrics


def cli(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit status 2."""
    run_cli(PROG, main, argv, on_interrupt=lambda: 'interrupted; nothing was written (results '
            'are written at the end).')


if __name__ == '__main__':
    cli()
