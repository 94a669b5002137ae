"""Build the tiny Stable Diffusion test model and the demo "cat toy" images.

The tests and the CPU smoke runs of mmti need a Stable Diffusion checkpoint
that loads like the real one (diffusers folder layout, same component classes,
same tokenizer) but is small enough to commit and to train on a laptop CPU.
This script writes:

* ``data/tiny-sd/``: SD 1.5's architecture shrunk to a few MB, random weights,
  with the real CLIP BPE tokenizer so that prompts tokenize exactly as in SD.
* ``data/tiny-sd2/`` (``--family sd2``) and ``data/tiny-sdxl/``
  (``--family sdxl``): the same for SD 2.x (v-prediction, OpenCLIP-style text
  encoder) and SDXL (two text encoders, micro-conditioning). Their tokenizers
  are copied from ``data/tiny-sd/tokenizer`` and differ only in the padding
  token, so they do not need the openai-clip package.
* ``data/cat_toy/``: five procedurally drawn pictures of one toy cat, the
  concept used by the Textual Inversion demo.

Everything is deterministic: rerunning the script gives bitwise-identical
weight files and images (for the same library versions). The pieces live
beside this script: ``tiny_models.py`` (the model families), ``clip_vocab.py``
(the tokenizer), ``cat_toy_painter.py`` (the images) and ``staged_output.py``
(folders replaced only once complete).

Usage::

    python tools/dev/make_tiny_model.py [--out data/tiny-sd] [--force]
    python tools/dev/make_tiny_model.py --family sd2 --out data/tiny-sd2 --model-only
    python tools/dev/make_tiny_model.py --family sdxl --out data/tiny-sdxl --model-only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cat_toy_painter import make_cat_toy_images
from staged_output import folder_size, is_nonempty_dir, staged_output
from tiny_models import MODEL_FAMILIES, TINY_SD

DEFAULT_IMAGES_DIR = TINY_SD.parent / "cat_toy"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=TINY_SD, help="model folder to write")
    parser.add_argument("--images-out", type=Path, default=DEFAULT_IMAGES_DIR, help="demo image folder to write")
    parser.add_argument("--family", choices=sorted(MODEL_FAMILIES), default="sd15", help="model family to build")
    parser.add_argument("--force", action="store_true", help="replace existing non-empty output folders")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--model-only", action="store_true", help="do not write the demo images")
    only.add_argument("--images-only", action="store_true", help="do not write the model")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command line tool.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The process exit status.
    """
    args = parse_args(argv)
    # Check both targets before writing anything, so a refusal is all-or-nothing.
    targets = [] if args.images_only else [args.out]
    targets += [] if args.model_only else [args.images_out]
    for target in targets:
        if is_nonempty_dir(target) and not args.force:
            print(f"error: {target} exists and is not empty; pass --force to replace it", file=sys.stderr)
            return 1
    if not args.images_only:
        start = time.perf_counter()
        with staged_output(args.out, args.force) as tmp:
            params = MODEL_FAMILIES[args.family](tmp)
        for name, n in params.items():
            print(f"{name}: {n:,} parameters")
        size_mb = folder_size(args.out) / 2**20
        print(f"wrote {args.out} ({size_mb:.1f} MiB) in {time.perf_counter() - start:.1f} s")
    if not args.model_only:
        with staged_output(args.images_out, args.force) as tmp:
            paths = make_cat_toy_images(tmp)
        print(f"wrote {len(paths)} images to {args.images_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
