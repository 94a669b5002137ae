"""Sample images with a learned embedding.

    python tools/infer.py configs/textual_inversion_tiny.py \
        --embeddings work_dirs/textual_inversion_tiny/learned_embeds.safetensors \
        --prompt 'a <cat-toy> bag' --num-images 4 --seed 0

Image ``i`` of a prompt starts from noise drawn from ``(seed, i)`` alone, so
it is the same whatever ``--num-images``, ``--batch-size`` or the other
prompts are (with a deterministic sampler, the default). Images are written
as ``<prompt>_seed<seed>_<i>.png``; a file already there is never replaced:
the new image gets the next free name (``..._<i>-2.png``). One progress bar
counts the images (on a terminal); one line at the end says where they went.

Bad input (a size that is no multiple of 8, an unknown scheduler, a damaged
or mismatched embedding file, an output folder that cannot be written) is
refused with one line before the model is loaded; ``--debug`` shows the
traceback. A prompt longer than the text encoder reads is sampled, cut, after
one warning line from the model that names it; so is one naming a
``<placeholder>`` that no loaded file has (the config's own placeholder counts
only when the file gives its rows). ``--token NAME`` uses a one-concept file
under another name (an A1111 ``cat.pt`` names the word "cat").
"""
import argparse
import itertools
import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch
from mmengine.config import Config
from tqdm import tqdm

from mmti.fileio import (check_output_dir, check_token_name, clip_g_half_problem,  # noqa: E402
                         describe_dim, read_embedding_file, save_new_sample)
from mmti.engine import load_user_config  # noqa: E402
from mmti.engine.console import quiet_library_notices  # noqa: E402
from mmti.registry import MODELS  # noqa: E402
from mmti.utils import (UserError, add_cfg_options, check_device, prog_name,  # noqa: E402
                        run_cli)

PROG = prog_name('tools/infer.py')
SIZE_MULTIPLE = 8  # diffusers' pipelines need height and width divisible by 8
# Rough peak memory of sampling one image, per output pixel and element of
# the weights' dtype: the VAE decoder runs at full resolution with about six
# live activations of its widest (first) block's channels.
LIVE_DECODER_ACTIVATIONS = 6


DEFAULT_BATCH_SIZE = 4  # images per pipeline call (lowered to what memory holds)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG,
                                     description='Sample images with a learned embedding')
    parser.add_argument('config', help='the training config (names the base model)')
    parser.add_argument('--embeddings', required=True,
                        help='learned_embeds.safetensors (or folder)')
    parser.add_argument('--token', default=None,
                        help="name to use the file's concept by in prompts (a file with one "
                             'concept, e.g. an A1111 file named like a common word)')
    parser.add_argument('--prompt', required=True, action='append',
                        help='prompt using the placeholder token; repeat for several')
    parser.add_argument('--negative-prompt', default=None)
    parser.add_argument('--num-images', type=int, default=1, help='images per prompt')
    parser.add_argument('--batch-size', type=int, default=DEFAULT_BATCH_SIZE,
                        help='images sampled at once (lowered to what memory holds)')
    parser.add_argument('--steps', type=int, default=50, help='denoising steps')
    parser.add_argument('--guidance-scale', type=float, default=7.5)
    parser.add_argument('--height', type=int, default=None,
                        help=f'pixels, a multiple of {SIZE_MULTIPLE} (default: the model\'s)')
    parser.add_argument('--width', type=int, default=None,
                        help=f'pixels, a multiple of {SIZE_MULTIPLE} (default: the model\'s)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--scheduler', default=None, help='diffusers scheduler class name')
    parser.add_argument('--out-dir', default='outputs', help='where the PNGs go')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    add_cfg_options(parser)
    return parser.parse_args(argv)


# ------------------------------------------------------- checks before loading
def check_numbers(args: argparse.Namespace) -> None:
    """Refuse sizes, counts and scales the pipeline cannot use."""
    for option in ('height', 'width'):
        value = getattr(args, option)
        if value is not None and (value <= 0 or value % SIZE_MULTIPLE):
            below = max(SIZE_MULTIPLE, value // SIZE_MULTIPLE * SIZE_MULTIPLE)
            raise UserError(f'--{option} {value} must be a positive multiple of {SIZE_MULTIPLE} '
                            f'(e.g. {below} or {below + SIZE_MULTIPLE}).')
    for option, what in (('num_images', 'images per prompt'), ('steps', 'denoising steps'),
                         ('batch_size', 'images sampled at once')):
        value = getattr(args, option)
        if value < 1:
            raise UserError(f'--{option.replace("_", "-")} {value}: the number of {what} must be '
                            'at least 1.')
    if not math.isfinite(args.guidance_scale):
        raise UserError(f'--guidance-scale {args.guidance_scale} must be a finite number '
                        '(e.g. 7.5).')
    check_device(args.device)


def load_config(args: argparse.Namespace) -> Config:
    # Its custom imports (the models, hence transformers and its import-time
    # warnings) wait until the input is checked; main() imports the models.
    return load_user_config(args.config, args.cfg_options, import_custom_modules=False,
                            check_model=True)


def check_scheduler(name: str | None, cfg: Config) -> None:
    """The sampler must be one diffusers can make from the training schedule.

    The model checks again when it samples; this answers before it loads.
    """
    if name is None:
        return
    import diffusers
    base = (cfg.model.get('noise_scheduler') or {}).get('type', 'DDPMScheduler')
    base_cls = getattr(diffusers, str(base), None)
    if base_cls is None or not hasattr(base_cls, '_get_compatibles'):
        return  # a custom schedule: leave the verdict to the model
    # The classmethod behind the instances' ``compatibles``, as the model asks it.
    allowed = sorted({c.__name__ for c in base_cls._get_compatibles()} | {base_cls.__name__})
    if name not in allowed:
        raise UserError(f'--scheduler {name!r} is not a sampler for this model; use one of: '
                        f'{", ".join(allowed)}.')


def text_encoder_dim(cfg: Config) -> int | None:
    """Token-embedding width of the config's local base model, when it is on disk."""
    model = cfg.get('model', {})
    if model.get('text_encoder'):
        return None  # built from its own settings; the model will check
    path = Path(str(model.get('pretrained_model', ''))) / 'text_encoder' / 'config.json'
    try:
        return int(json.loads(path.read_text())['hidden_size'])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a hub name or an unusual layout: the model checks when loading


def check_embeddings(path: str, cfg: Config, token: str | None = None) -> None:
    """Read the file (damaged, empty, NaN rows, a --token for several concepts)
    and compare widths, before loading."""
    if token is not None:
        check_token_name(token, '--token', one_word=True)
    contents = read_embedding_file(path, token=token)
    half = clip_g_half_problem(path)
    if half:
        raise UserError(f'{half}.')
    dim = text_encoder_dim(cfg)
    if dim is None:
        return
    for name, rows in contents.embeddings.items():
        if rows.shape[1] != dim:
            sdxl = (' (an SDXL embedding, clip_l + clip_g: use it with an SDXL config)'
                    if contents.embeddings_2 else '')
            raise UserError(
                f'Embedding {name!r} from {path}{sdxl} has shape {tuple(rows.shape)}: dimension '
                f'{describe_dim(rows.shape[1])}, but this text encoder uses dimension '
                f'{describe_dim(dim)}; it was made for another base model than '
                f'{cfg.model.get("pretrained_model")}.')


# ------------------------------------------------------ checks after loading
def memory_bytes(device: torch.device) -> tuple[int, int]:
    """(available, total) bytes of the memory that sampling on ``device`` uses."""
    if device.type == 'cuda':
        free, total = torch.cuda.mem_get_info(device)
        return free, total  # no swap on a GPU: free memory is the limit
    page = os.sysconf('SC_PAGE_SIZE')
    total = os.sysconf('SC_PHYS_PAGES') * page
    try:
        with open('/proc/meminfo') as f:
            info = dict(line.split(':', 1) for line in f)
        available = int(info['MemAvailable'].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        available = os.sysconf('SC_AVPHYS_PAGES') * page
    return available, total


def bytes_per_image(model, height: int, width: int) -> int:
    """Rough peak memory of sampling one image (see LIVE_DECODER_ACTIVATIONS)."""
    element = next(model.vae.parameters()).element_size()
    channels = model.vae.config.block_out_channels[0]
    return height * width * channels * element * LIVE_DECODER_ACTIVATIONS


def plan_batch(model, args: argparse.Namespace, height: int, width: int) -> int:
    """Images per pipeline call: ``--batch-size`` or fewer, as memory allows.

    Refuses a size of which not even one image fits in memory.
    """
    per_image = bytes_per_image(model, height, width)
    available, total = memory_bytes(torch.device(args.device))
    limit = total if torch.device(args.device).type == 'cpu' else available
    if per_image > limit:
        side = int(math.sqrt(limit / per_image * height * width)) // SIZE_MULTIPLE * SIZE_MULTIPLE
        raise UserError(f'--height/--width {height}x{width} needs about {per_image / 2**30:.1f} '
                        f'GiB per image, more than the {limit / 2**30:.1f} GiB of memory of '
                        f'{args.device}; lower them (about {side}x{side} fits).')
    fits = max(1, available // per_image)
    if fits < args.batch_size:
        print(f'{PROG}: note: sampling {fits} image(s) at a time instead of --batch-size '
              f'{args.batch_size}: {available / 2**30:.1f} GiB of memory is free.', file=sys.stderr)
    return int(min(args.batch_size, fits))


def check_disk(out_dir: str, count: int, height: int, width: int) -> None:
    """Refuse a number of images whose PNGs cannot fit on the disk."""
    existing = Path(out_dir).absolute()
    while not existing.exists():
        existing = existing.parent
    per_png = height * width * 3 + 4096  # uncompressed RGB: a PNG's worst case
    free = shutil.disk_usage(existing).free
    if count * per_png > free:
        raise UserError(f'{count} images of {height}x{width} may need '
                        f'{count * per_png / 2**30:.1f} GiB, but {existing} has '
                        f'{free / 2**30:.1f} GiB free; lower --num-images (at most about '
                        f'{free // per_png} images in all fit) or pass another --out-dir.')


# ----------------------------------------------------------------- sampling
def main(argv: list[str] | None = None, progress: dict | None = None) -> list[Path]:
    """Sample and write the images; returns the paths written, in prompt order."""
    progress = {} if progress is None else progress
    args = parse_args(argv)
    check_numbers(args)
    # Before the config: checking --cfg-options imports the models, and with
    # them transformers' notices.
    quiet_library_notices()
    cfg = load_config(args)
    check_output_dir(args.out_dir)
    check_embeddings(args.embeddings, cfg, args.token)
    check_scheduler(args.scheduler, cfg)

    from mmti.models.sampling import initial_latents, noise_seed
    import mmti.models  # noqa: F401  (registers TextualInversion)
    model = MODELS.build(cfg.model).to(args.device)
    loaded = model.load_embeddings(args.embeddings, token=args.token)
    # The config's own placeholder holds its initializer word's rows unless
    # the file replaced them: a prompt naming it would draw that word silently.
    untrained = [t for t in model.concepts if t not in loaded]
    if untrained:
        model.unload_embeddings(untrained)
    print(f'Loaded {loaded} from {args.embeddings}')
    if args.scheduler is not None:
        model.build_inference_scheduler(args.scheduler)  # refuses a sampler it cannot make
    native_h, native_w = model.native_image_size()
    height, width = args.height or native_h, args.width or native_w
    batch = plan_batch(model, args, height, width)
    check_disk(args.out_dir, len(args.prompt) * args.num_images, height, width)

    written = progress.setdefault('written', [])
    progress['out_dir'] = args.out_dir
    total = len(args.prompt) * args.num_images
    # Jobs are made chunk by chunk: --num-images may be large.
    jobs = ((prompt, i) for prompt in args.prompt for i in range(args.num_images))
    # One bar over all images (the pipeline's per-call bars are off); none
    # when stderr is not a terminal (disable=None), so logs stay short.
    with tqdm(total=total, desc='sample', unit='image', file=sys.stderr, disable=None,
              dynamic_ncols=True) as bar:
        for start in itertools.count(0, batch):
            chunk = list(itertools.islice(jobs, batch))
            if not chunk:
                break
            samples = model.infer(
                [prompt for prompt, _ in chunk], negative_prompt=args.negative_prompt,
                num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                height=height, width=width, num_images_per_prompt=1,
                seed=noise_seed(args.seed, -1 - start), scheduler=args.scheduler,
                latents=initial_latents(model, args.seed, [i for _, i in chunk], height, width),
                show_progress=False,
            )['samples']
            for (prompt, i), image in zip(chunk, samples):
                written.append(save_new_sample(image, args.out_dir, prompt, args.seed, i))
                bar.update(1)
    print(written_line(written, args.out_dir))
    return written


def written_line(paths: list[Path], out_dir: str, shown: int = 8) -> str:
    """One line: how many images, the folder, and their names (the first
    ``shown`` of them; a name may carry a ``-2`` suffix, so they are listed)."""
    names = [Path(p).name for p in paths]
    listed = ', '.join(names[:shown]) + (f', ... ({len(names)} in all)'
                                         if len(names) > shown else '')
    return f'Wrote {len(names)} image(s) to {out_dir}: {listed}'


def cli(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit status 2."""
    progress: dict = {}

    def interrupted() -> str:
        count = len(progress.get('written', []))
        where = progress.get('out_dir', 'the output folder')
        return (f'interrupted; the {count} image(s) written to {where} are kept (each file is '
                'complete).')

    run_cli(PROG, lambda a: main(a, progress), argv, on_interrupt=interrupted)


if __name__ == '__main__':
    cli()
