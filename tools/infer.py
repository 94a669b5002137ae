"""Sample images with a learned embedding.

    python tools/infer.py configs/textual_inversion_tiny.py \
        --embeddings work_dirs/textual_inversion_tiny/learned_embeds.safetensors \
        --prompt 'a <cat-toy> bag' --num-images 4 --seed 0
"""
import argparse
import os.path as osp
import sys
from pathlib import Path

import torch
from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout
from mmti.fileio import atomic_write, sample_filename  # noqa: E402
from mmti.registry import MODELS  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Sample images with a learned embedding')
    parser.add_argument('config', help='the training config (names the base model)')
    parser.add_argument('--embeddings', required=True, help='learned_embeds.safetensors (or folder)')
    parser.add_argument('--prompt', required=True, action='append',
                        help='prompt using the placeholder token; repeat for several')
    parser.add_argument('--negative-prompt', default=None)
    parser.add_argument('--num-images', type=int, default=1, help='images per prompt')
    parser.add_argument('--steps', type=int, default=50, help='denoising steps')
    parser.add_argument('--guidance-scale', type=float, default=7.5)
    parser.add_argument('--height', type=int, default=None)
    parser.add_argument('--width', type=int, default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--scheduler', default=None, help='diffusers scheduler class name')
    parser.add_argument('--out-dir', default='outputs', help='where the PNGs go')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    if args.num_images < 1 or args.steps < 1:
        raise SystemExit('--num-images and --steps must be at least 1.')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    import mmti.models  # noqa: F401  (registers TextualInversion)
    model = MODELS.build(cfg.model).to(args.device)
    loaded = model.load_embeddings(args.embeddings)
    print(f'Loaded {loaded} from {args.embeddings}')
    samples = model.infer(args.prompt, negative_prompt=args.negative_prompt,
                          num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                          height=args.height, width=args.width,
                          num_images_per_prompt=args.num_images, seed=args.seed,
                          scheduler=args.scheduler)['samples']
    written = []
    for i, image in enumerate(samples):
        prompt = args.prompt[i // args.num_images]
        path = Path(args.out_dir) / sample_filename(prompt, args.seed, i % args.num_images)
        with atomic_write(path) as tmp:
            image.save(tmp, format='PNG')
        written.append(path)
        print(f'Wrote {path}')
    return written


if __name__ == '__main__':
    main()
