"""The Quick start demo: learn a new concept in the toy world, on a CPU.

The toy Stable Diffusion (data/toy/sd, pretrained by mmti on its synthetic
world of captioned shapes) has never seen a purple dotted star. This demo

1. learns ``<purple-dotted-star>`` from 5 images with tools/train.py
   (configs/textual_inversion_toy.py),
2. samples "a <purple-dotted-star>", two edit prompts and, for comparison, the
   plain initializer word "star" with tools/infer.py, and writes a PNG grid
   next to the training images,
3. measures the paper's two numbers with tools/evaluate.py and the toy world's
   evaluation CLIP (data/toy/clip_eval):
   image similarity (does it look like the training images?) and text
   similarity (do edit prompts still work?), next to the initializer word
   "star" and the held-out real images.

A few minutes on 2 CPU cores. ``--work-dir`` changes where everything goes;
``--max-iters`` shortens (or lengthens) the training. Run again, it continues
the run in the work dir (``--resume``: nothing to do when it is finished) and
samples and measures afresh.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout
from mmti.fileio import atomic_write, sample_filename  # noqa: E402
from mmti.utils import UserError, run_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = Path('configs') / 'textual_inversion_toy.py'
CONCEPT = ROOT / 'data' / 'toy_concepts' / 'purple-dotted-star'
TOKEN = '<purple-dotted-star>'
INITIALIZER = 'star'  # the config's initializer_token: what the prompt gives before training
PROMPTS = (f'a large {TOKEN} in the center on a white background',
           f'a small {TOKEN} on the left on a black background',
           f'a large {TOKEN} at the top on a gray background')
IMAGES_PER_ROW = 5
CELL = 96  # the 32 px samples, enlarged so a pattern is visible


def run(*args: str) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE='1')
    if subprocess.run([sys.executable, *args], env=env, cwd=ROOT).returncode != 0:
        # The tool has printed its own one-line reason just above.
        raise UserError(f'{args[0]} stopped; see its message above.')


def grid(rows: list[tuple[str, list[Path]]], path: Path) -> None:
    """One labelled row of enlarged images per (label, files)."""
    label_height = 14
    width = CELL * IMAGES_PER_ROW
    canvas = Image.new('RGB', (width, len(rows) * (CELL + label_height)), 'white')
    draw = ImageDraw.Draw(canvas)
    for r, (label, files) in enumerate(rows):
        top = r * (CELL + label_height)
        draw.text((2, top + 1), label, fill='black')
        for c, file in enumerate(files[:IMAGES_PER_ROW]):
            with Image.open(file) as image:
                cell = image.convert('RGB').resize((CELL, CELL), Image.NEAREST)
            canvas.paste(cell, (c * CELL, top + label_height))
    with atomic_write(path) as tmp:
        canvas.save(tmp, format='PNG')


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/textual_inversion_toy')
    parser.add_argument('--max-iters', type=int, default=None,
                        help="training steps (default: the config's)")
    args = parser.parse_args(argv)
    if args.max_iters is not None and args.max_iters < 1:
        parser.error('--max-iters must be at least 1.')
    work_dir = Path(args.work_dir)
    if not work_dir.is_absolute():
        work_dir = ROOT / work_dir

    schedule = ([] if args.max_iters is None
                else ['--cfg-options', f'train_cfg.max_iters={args.max_iters}'])
    print(f'[1/3] Learning {TOKEN} from 5 images (tools/train.py)', flush=True)
    # --resume: a finished run in the work dir is reused, not refused.
    run('tools/train.py', str(CONFIG), '--work-dir', str(work_dir), '--resume', *schedule)
    embedding = work_dir / 'learned_embeds.safetensors'

    samples = work_dir / 'demo_samples'
    shutil.rmtree(samples, ignore_errors=True)  # the demo's own scratch folder; infer never overwrites
    print(f'[2/3] Sampling the learned word and the plain word {INITIALIZER!r} '
          '(tools/infer.py)', flush=True)
    before = PROMPTS[0].replace(TOKEN, INITIALIZER)
    run('tools/infer.py', str(CONFIG), '--embeddings', str(embedding),
        *[arg for prompt in (before, *PROMPTS) for arg in ('--prompt', prompt)],
        '--num-images', str(IMAGES_PER_ROW), '--steps', '25', '--guidance-scale', '1.5',
        '--seed', '0', '--out-dir', str(samples))
    rows = [('training images', sorted((CONCEPT / 'train').glob('*.png'))),
            (f'{before} (the plain word, before training)',
             [samples / sample_filename(before, 0, i) for i in range(IMAGES_PER_ROW)])]
    rows += [(prompt, [samples / sample_filename(prompt, 0, i)
                       for i in range(IMAGES_PER_ROW)])
             for prompt in PROMPTS]
    grid_path = work_dir / 'demo_grid.png'
    grid(rows, grid_path)

    print('[3/3] Measuring image and text similarity (tools/evaluate.py)', flush=True)
    evaluation = work_dir / 'evaluation'
    run('tools/evaluate.py', str(CONFIG), '--embeddings', str(embedding),
        '--out-dir', str(evaluation))
    metrics = json.loads((evaluation / 'metrics.json').read_text())
    learned = metrics['rows']['learned']
    print('\nDemo finished.')
    print(f'  image similarity (looks like the training images): '
          f"{learned['image_similarity']:.3f}")
    print(f'  text similarity (follows edit prompts):            '
          f"{learned['text_similarity']:.3f}")
    print(f"  verdict: {metrics['verdict']}")
    print(f'  learned embedding: {embedding}')
    print(f'  sample grid:       {grid_path}')
    print(f'  metrics and plot:  {evaluation}')
    return metrics


if __name__ == '__main__':
    run_cli('tools/demo.py', main)
