"""Does ``compile_unet`` change what is learned? Compare loss and gradient.

    python tools/check_compiled_gradients.py --pretrained data/tiny-sd --backend aot_eager

Builds the model twice (eager and compiled UNet), runs one loss/backward on
the same images, captions and noise seeds, and prints the relative difference
of the loss and of the placeholder rows' gradient as JSON.
"""
import argparse
import json
import os.path as osp
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout
import mmti.models  # noqa: E402,F401
from mmti.registry import MODELS  # noqa: E402


def loss_and_grad(model, images, captions, seeds):
    rows = model.token_embedding.concept_rows('<cat-toy>')
    loss = model.loss(images, captions, seeds)['loss']
    (grad,) = torch.autograd.grad(loss, rows)
    return loss.detach(), grad


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pretrained', required=True)
    parser.add_argument('--backend', default='inductor')
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    cfg = dict(type='TextualInversion', pretrained_model=args.pretrained,
               placeholder_token='<cat-toy>', initializer_token='toy', latent_cache=False)
    images = torch.rand(2, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    images = (images * 2 - 1).to(args.device)
    captions, seeds = ['a photo of a <cat-toy>', 'a <cat-toy> on a table'], [1, 2]
    eager = MODELS.build(cfg).to(args.device)
    reference = loss_and_grad(eager, images, captions, seeds)
    del eager
    compiled = MODELS.build(dict(cfg, compile_unet=args.backend)).to(args.device)
    start = time.perf_counter()
    result = loss_and_grad(compiled, images, captions, seeds)
    report = {
        'backend': args.backend, 'device': args.device,
        'first_call_s': time.perf_counter() - start,
        'loss_eager': float(reference[0]), 'loss_compiled': float(result[0]),
        'grad_relative_error': float((reference[1] - result[1]).norm() / reference[1].norm()),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == '__main__':
    main()
