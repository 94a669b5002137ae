"""Rows tuned for a CLIP's judgement instead of the denoising loss (a research tool).

Textual Inversion picks the rows with the lowest denoising loss on the
training images. This tool asks what rows the same frozen model could have:
starting from learned rows, it renders the concept's training captions with
the config's sampler (its evaluation block's denoising steps and guidance),
keeps the whole sampling chain differentiable, scores the renders against the
training images with a CLIP's image tower, and moves the rows up that score
with Adam. It reads nothing but the training images and captions (the
dataset's own captions, caption files or templates); held-out images are for
``tools/evaluate.py`` afterwards. Guide it with another CLIP than the one the
evaluation measures with, or it optimises the instrument. What it found on the
toy world: ``docs/fast_concepts.md`` ("Rows that pass exist").

Each step backpropagates through every denoising step (each step's UNet call
is recomputed in the backward pass, so memory stays one step's). SD 1.x/2.x
configs only.

Usage::

    python tools/dev/clip_guided_rows.py configs/textual_inversion_toy.py \\
        --embeddings work_dirs/textual_inversion_toy/learned_embeds.safetensors \\
        --clip data/toy/clip --out guided.safetensors [--steps 60] [--cfg-options ...]
"""
import argparse
import random
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout
from mmti.utils.cli_errors import UserError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--embeddings', required=True, help='the learned rows to start from')
    parser.add_argument('--clip', required=True, help='the guiding CLIP folder')
    parser.add_argument('--out', required=True, help='where to write the tuned rows')
    parser.add_argument('--steps', type=int, default=60, help='Adam steps (60)')
    parser.add_argument('--lr', type=float, default=2e-3, help='Adam learning rate (2e-3)')
    parser.add_argument('--renders', type=int, default=15, help='renders per step (15)')
    parser.add_argument('--denoising-steps', type=int, default=None,
                        help="sampler steps; default: the evaluation block's, else 25")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config settings (the concept: model.placeholder_token, '
                             'model.initializer_token, train_dataloader.dataset.data_root)')
    return parser.parse_args(argv)


def render(model, prompts: list[str], generator: torch.Generator, steps: int,
           guidance: float) -> torch.Tensor:
    """Images in [0, 1], ``[B, 3, H, W]``, differentiable with respect to the rows."""
    scheduler = model.build_inference_scheduler()
    scheduler.set_timesteps(steps)
    height, width = model.native_image_size()
    factor = model.vae_scale_factor()
    latents = torch.randn(len(prompts), model.unet.config.in_channels, height // factor,
                          width // factor, generator=generator) * scheduler.init_noise_sigma
    states = torch.cat([model.encode_prompt([''] * len(prompts)).detach(),
                        model.encode_prompt(prompts)])

    def guided(latents, t, states):
        both = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        uncond, cond = model.unet(both, t, states).sample.chunk(2)
        return uncond + guidance * (cond - uncond)

    # diffusers' pipelines sample without gradients: the loop is written out here.
    for t in scheduler.timesteps:
        prediction = checkpoint(guided, latents, t, states, use_reentrant=False)
        latents = scheduler.step(prediction, t, latents).prev_sample
    images = model.vae.decode(latents / model.vae.config.scaling_factor).sample
    return (images.clamp(-1, 1) + 1) / 2


def clip_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """``[0, 1]`` images prepared as CLIP's processor prepares PIL images
    (shorter side to ``size``, centre crop, normalise), differentiably."""
    from mmti.evaluation import CLIP_MEAN, CLIP_STD
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    images = F.interpolate(images, size=(round(height * scale), round(width * scale)),
                           mode='bicubic', align_corners=False, antialias=True)
    top, left = (images.shape[-2] - size) // 2, (images.shape[-1] - size) // 2
    images = images[..., top:top + size, left:left + size]
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def guide_similarity(model, scorer, prompts, target, generator, steps, guidance) -> torch.Tensor:
    """Mean cosine between the guide's features of the prompts' renders and
    ``target`` (the evaluation's image similarity), differentiable."""
    renders = render(model, prompts, generator, steps, guidance)
    return (scorer.pixel_features(clip_pixels(renders, scorer.image_size)) @ target.T).mean()


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.steps < 1 or args.renders < 1:
        raise UserError('--steps and --renders must be at least 1.')
    if Path(args.out).resolve() == Path(args.embeddings).resolve():
        raise UserError(f'--out {args.out} is the --embeddings file; write the tuned rows '
                        'elsewhere so the learned ones stay.')
    from mmengine.registry import init_default_scope

    import mmti.datasets  # noqa: F401  (registers the dataset)
    import mmti.models  # noqa: F401  (registers the models)
    from mmti.datasets.evaluation_inputs import load_images
    from mmti.engine.config_checks import fill_placeholder_token
    from mmti.evaluation import ClipScorer
    from mmti.registry import DATASETS, MODELS
    init_default_scope('mmti')
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    fill_placeholder_token(cfg)  # the dataset's captions name the model's placeholder
    from mmti.models import TextualInversionXL
    if issubclass(MODELS.get(cfg.model.type), TextualInversionXL):
        raise UserError(f'{args.config} is an SDXL config; this tool renders SD 1.x/2.x only.')
    token = cfg.model.get('placeholder_token')
    if cfg.model.get('concepts') or not isinstance(token, str):
        raise UserError(f'{args.config} trains several concepts; give a one-concept config '
                        '(its placeholder_token and data_root are the concept tuned).')
    model = MODELS.build(cfg.model).eval()
    try:
        model.load_embeddings(args.embeddings, token=token)
    except (ValueError, KeyError, OSError) as error:
        raise UserError(f'cannot load {args.embeddings}: {error}') from None
    model.requires_grad_(False)
    rows = model.token_embedding.concept_rows(token)
    rows.requires_grad_(True)
    try:
        scorer = ClipScorer(args.clip)
    except (OSError, ValueError) as error:
        raise UserError(f'cannot load the guiding CLIP: {error}') from None
    scorer.model.requires_grad_(False)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    captions = dataset.distinct_captions()
    target = scorer.image_features(load_images(cfg.train_dataloader.dataset.data_root,
                                               'data_root', log=False))
    evaluation = cfg.get('evaluation') or {}
    steps = args.denoising_steps or evaluation.get('steps', 25)
    guidance = evaluation.get('guidance_scale', model.DEFAULT_GUIDANCE)
    # A fixed measurement (its own seed, each caption once) before and after.
    def fixed_measurement() -> float:
        with torch.no_grad():
            return float(guide_similarity(model, scorer, captions, target,
                                          torch.Generator().manual_seed(args.seed + 1), steps,
                                          guidance))

    before = fixed_measurement()
    optimizer = torch.optim.Adam([rows], lr=args.lr)
    pick = random.Random(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(1, args.steps + 1):
        prompts = [captions[pick.randrange(len(captions))] for _ in range(args.renders)]
        similarity = guide_similarity(model, scorer, prompts, target, generator, steps, guidance)
        optimizer.zero_grad()
        (-similarity).backward()
        optimizer.step()
        print(f'step {step}/{args.steps}: guide similarity {similarity.item():.4f}', flush=True)
    after = fixed_measurement()
    model.save_embeddings(args.out, tokens=[token])
    print(f'Guide similarity on a fixed draw of every caption: {before:.4f} before, '
          f'{after:.4f} after. Tuned rows of {token} written to {args.out}.')
    return {'before': before, 'after': after}


if __name__ == '__main__':
    try:
        main()
    except UserError as error:
        sys.exit(f'clip_guided_rows.py: error: {error}')
