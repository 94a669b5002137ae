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
"""
import argparse
import json
import os
import os.path as osp
import sys
from pathlib import Path

import torch
from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout
from mmti.fileio import atomic_write  # noqa: E402
from mmti.registry import MODELS  # noqa: E402

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.webp', '.bmp')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='CLIP image/text similarity of a learned embedding')
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


def fail(message: str) -> SystemExit:
    return SystemExit(f'tools/evaluate.py: error: {message}')


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (by suffix), sorted."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_images(folder: str, what: str) -> list:
    from PIL import Image, UnidentifiedImageError
    if not Path(folder).is_dir():
        raise fail(f'{what} {folder} is not a folder.')
    files = image_files(folder)
    if not files:
        raise fail(f'{what} {folder} has no images ({", ".join(IMAGE_SUFFIXES)}).')
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                images.append(image.convert('RGB'))
        except (OSError, UnidentifiedImageError) as error:
            raise fail(f'cannot read image {file}: {error}') from None
    return images


def held_out_captions(folder: str | None) -> list[str]:
    """The first line of each held-out image's caption file, in image order."""
    if not folder:
        raise fail('--reconstruct-held-out-captions needs --held-out-dir (images with caption '
                   'files beside them).')
    files = image_files(folder)
    for image in files:
        if not image.with_suffix('.txt').is_file():
            raise fail(f'--reconstruct-held-out-captions: held-out image {image} has no caption '
                       f'file {image.with_suffix(".txt").name} beside it (a line like '
                       '"a {} on a red sofa").')
    from mmti.datasets.textual_inversion_dataset import read_caption_file
    try:
        return [read_caption_file(image)[0] for image in files]
    except ValueError as error:
        raise fail(str(error)) from None


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
    evaluation = dict(cfg.get('evaluation') or {})
    unknown = set(evaluation) - set(EVALUATION_DEFAULTS) - {'reconstruction_prompt',
                                                            'edit_prompts'}
    if unknown:
        raise fail(f'config evaluation has unknown keys {sorted(unknown)}; known: '
                   f'{sorted([*EVALUATION_DEFAULTS, "reconstruction_prompt", "edit_prompts"])}.')
    for key, default in EVALUATION_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, evaluation.get(key, default))
    if args.concept_dir is None:
        args.concept_dir = cfg.get('train_dataloader', {}).get('dataset', {}).get('data_root')
    if args.clip is None:
        raise fail('no CLIP model given: pass --clip FOLDER (a local copy of e.g. '
                   'openai/clip-vit-base-patch32) or set evaluation.clip in the config.')
    if args.concept_dir is None:
        raise fail('no training images given: pass --concept-dir FOLDER.')
    # Only what the config sets; evaluate_concept has the paper's defaults.
    return {key: (list(value) if key == 'edit_prompts' else value)
            for key, value in evaluation.items()
            if key in ('reconstruction_prompt', 'edit_prompts')}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not Path(args.config).is_file():
        raise fail(f'config {args.config} does not exist.')
    # Its custom imports (the models, hence transformers) wait until the inputs
    # are checked: a bad path should fail fast, with nothing but its error.
    cfg = Config.fromfile(args.config, import_custom_modules=False)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    prompts = apply_config_defaults(args, cfg)
    if args.num_samples < 1 or args.steps < 1:
        raise fail('--num-samples and --steps must be at least 1.')
    if not Path(args.embeddings).exists():
        raise fail(f'embeddings {args.embeddings} do not exist.')
    clip = Path(args.clip)
    if not clip.is_dir():
        raise fail(f'CLIP folder {args.clip} does not exist.')
    if not (clip / 'config.json').is_file():
        raise fail(f'CLIP folder {args.clip} has no config.json (expected a local CLIP model '
                   'saved with save_pretrained, e.g. openai/clip-vit-base-patch32).')
    if not any(clip.glob('*.safetensors')) and not any(clip.glob('pytorch_model*.bin')):
        raise fail(f'CLIP folder {args.clip} has no weights (model.safetensors or '
                   'pytorch_model.bin).')
    training = load_images(args.concept_dir, '--concept-dir')
    held_out = load_images(args.held_out_dir, '--held-out-dir') if args.held_out_dir else None
    if args.reconstruct_held_out_captions:
        prompts['reconstruction_prompt'] = held_out_captions(args.held_out_dir)

    from mmti.evaluation import ClipScorer, evaluate_concept, scatter_plot
    try:
        scorer = ClipScorer(args.clip, device=args.device)
    except Exception as error:  # noqa: BLE001  (any loading failure: one line)
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise fail(f'cannot load CLIP from {args.clip}: {first_line}') from None
    import mmti.models  # noqa: F401  (registers TextualInversion)
    model = MODELS.build(cfg.model).to(args.device)
    try:
        loaded = model.load_embeddings(args.embeddings)
    except (ValueError, KeyError, OSError) as error:
        raise fail(f'cannot load {args.embeddings}: {error}') from None
    print(f'Loaded {loaded} from {args.embeddings}')
    placeholder = args.placeholder
    if placeholder is None:
        if model.placeholder_token in loaded:
            placeholder = model.placeholder_token
        elif len(loaded) == 1:
            placeholder = loaded[0]
        else:
            raise fail(f'{args.embeddings} holds {loaded}; choose one with --placeholder.')
    elif placeholder not in model.concepts:
        raise fail(f'--placeholder {placeholder!r} is not loaded (loaded: {loaded}).')
    initializer = (cfg.model.get('initializer_token') if args.initializer is None
                   else args.initializer) or None

    rows = evaluate_concept(model, scorer, placeholder, training, held_out_images=held_out,
                            initializer_word=initializer, num_samples=args.num_samples,
                            steps=args.steps, seed=args.seed, size=args.size,
                            guidance_scale=args.guidance_scale, **prompts)
    print(markdown_table(rows))
    from mmti.evaluation import EDIT_PROMPTS, RECONSTRUCTION_PROMPT
    resolved_prompts = {'reconstruction_prompt': RECONSTRUCTION_PROMPT,
                        'edit_prompts': list(EDIT_PROMPTS), **prompts}
    out = Path(args.out_dir)
    metrics = {
        'rows': rows,
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


if __name__ == '__main__':
    main()
