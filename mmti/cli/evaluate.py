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

Bad input (a missing folder or CLIP model, a folder without images, numbers
out of range, an evaluation block that is not a dict, a damaged embedding file,
an output folder that cannot be written) is refused with one line, exit status
2, before CLIP or the diffusion model loads; ``--debug`` shows the traceback.
Images are read as training reads them (EXIF orientation applied,
transparency on white).
"""
import argparse
import json
import math
import sys
from pathlib import Path

import torch
from mmengine.config import Config, DictAction

from mmti.fileio import atomic_write, check_output_dir, read_embedding_file  # noqa: E402
from mmti.registry import MODELS  # noqa: E402
from mmti.utils import UserError, prog_name, run_cli  # noqa: E402

PROG = prog_name('tools/evaluate.py')
SIZE_MULTIPLE = 8  # diffusers' pipelines need height and width divisible by 8


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
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def image_files(folder: str | None, what: str, log: bool = True) -> list[Path]:
    """The images of ``folder`` as training lists them; ``what`` names the option.

    With ``log`` the folder's "using N images" line is logged; a second look
    at the same folder (or a check before the loading that logs it) passes
    ``log=False`` so the line is shown once.
    """
    from mmti.datasets.textual_inversion_dataset import list_concept_images
    if not folder or not Path(folder).is_dir():
        raise UserError(f'{what} {folder} does not exist or is not a folder; pass a folder of '
                        'images of the concept.')
    try:
        return list_concept_images(folder, log=log)
    except (ValueError, OSError) as error:
        raise UserError(f'{what}: {error}') from None


def load_images(folder: str, what: str) -> list:
    """The images of ``folder``, upright and RGB (alpha on white), as training reads them."""
    from mmti.datasets.textual_inversion_dataset import load_rgb
    return [load_rgb(file) for file in image_files(folder, what)]


def held_out_captions(folder: str | None) -> list[str]:
    """The first line of each held-out image's caption file, in image order."""
    if not folder:
        raise UserError('--reconstruct-held-out-captions needs --held-out-dir (images with '
                        'caption files beside them).')
    files = image_files(folder, '--held-out-dir', log=False)  # load_images logged it
    for image in files:
        if not image.with_suffix('.txt').is_file():
            raise UserError(f'--reconstruct-held-out-captions: held-out image {image} has no '
                            f'caption file {image.with_suffix(".txt").name} beside it (a line '
                            'like "a {} on a red sofa").')
    from mmti.datasets.textual_inversion_dataset import read_caption_file
    return [read_caption_file(image)[0] for image in files]


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


def apply_config_defaults(args: argparse.Namespace, cfg: Config) -> dict:
    """Fill options left unset from ``cfg.evaluation``; return its prompt settings."""
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
    if args.concept_dir is None:
        args.concept_dir = cfg.get('train_dataloader', {}).get('dataset', {}).get('data_root')
    if args.clip is None:
        raise UserError('no CLIP model given: pass --clip FOLDER (a local copy of e.g. '
                        'openai/clip-vit-base-patch32) or set evaluation.clip in the config.')
    if args.concept_dir is None:
        raise UserError('no training images given: pass --concept-dir FOLDER.')
    # Only what the config sets; evaluate_concept has the paper's defaults.
    return {key: (list(value) if key == 'edit_prompts' else value)
            for key, value in evaluation.items()
            if key in ('reconstruction_prompt', 'edit_prompts')}


def check_numbers(args: argparse.Namespace) -> None:
    """Refuse counts, sizes and scales (from the options or the config) out of range."""
    def where(key: str) -> str:
        return f'--{key.replace("_", "-")} (or evaluation.{key})'

    for key in ('num_samples', 'steps'):
        value = getattr(args, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f'{where(key)} is {value!r}; it must be a whole number of at least 1.')
    size = args.size
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0
                             or size % SIZE_MULTIPLE):
        raise UserError(f'{where("size")} is {size!r}; it must be a positive multiple of '
                        f'{SIZE_MULTIPLE} (e.g. 512), or unset for the model\'s own size.')
    scale = args.guidance_scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise UserError(f'{where("guidance_scale")} is {scale!r}; it must be a finite number '
                        '(e.g. 7.5).')


def main(argv: list[str] | None = None) -> dict:
    """Evaluate; returns the metrics written. Errors propagate (see :func:`cli`)."""
    args = parse_args(argv)
    if not Path(args.config).is_file():
        raise UserError(f'config {args.config} does not exist; pass the training config.')
    # Its custom imports (the models, hence transformers) wait until the inputs
    # are checked: a bad path should fail fast, with nothing but its error.
    cfg = Config.fromfile(args.config, import_custom_modules=False)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    prompts = apply_config_defaults(args, cfg)
    check_numbers(args)
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
    training = load_images(args.concept_dir, '--concept-dir')
    held_out = load_images(args.held_out_dir, '--held-out-dir') if args.held_out_dir else None
    if args.reconstruct_held_out_captions:
        prompts['reconstruction_prompt'] = held_out_captions(args.held_out_dir)

    from mmti.engine.console import quiet_library_notices
    quiet_library_notices()  # before CLIP and the pipeline are imported and loaded
    from mmti.evaluation import (EDIT_PROMPTS, RECONSTRUCTION_PROMPT, ClipScorer, evaluate_concept,
                                 scatter_plot, verdict)
    try:
        scorer = ClipScorer(args.clip, device=args.device)
    except Exception as error:  # noqa: BLE001  (any loading failure: one line)
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f'cannot load CLIP from {args.clip}: {first_line}') from None
    import mmti.models  # noqa: F401  (registers TextualInversion)
    model = MODELS.build(cfg.model).to(args.device)
    try:
        loaded = model.load_embeddings(args.embeddings)
    except (ValueError, KeyError, OSError) as error:
        raise UserError(f'cannot load {args.embeddings}: {error}') from None
    print(f'Loaded {loaded} from {args.embeddings}')
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
    resolved_prompts = {'reconstruction_prompt': RECONSTRUCTION_PROMPT,
                        'edit_prompts': list(EDIT_PROMPTS), **prompts}
    out = Path(args.out_dir)
    metrics = {
        'rows': rows,
        'verdict': conclusion,
        'settings': dict(config=args.config, embeddings=args.embeddings, clip=args.clip,
                         concept_dir=args.concept_dir, held_out_dir=args.held_out_dir,
                         placeholder=placeholder, initializer=initializer,
                         num_samples=args.num_samples, steps=args.steps, size=args.size,
                         guidance_scale=args.guidance_scale,
                         seed=args.seed, **resolved_prompts),
    }
    with atomic_write(out / 'metrics.json') as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + '\n')
    scatter_plot(rows, out / 'similarity.png', title=placeholder)
    print(f'Wrote {out / "metrics.json"} and {out / "similarity.png"}')
    return metrics


def cli(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit status 2."""
    run_cli(PROG, main, argv, on_interrupt=lambda: 'interrupted; nothing was written (results '
            'are written at the end).')


if __name__ == '__main__':
    cli()
