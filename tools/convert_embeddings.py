"""Convert embedding files between diffusers, A1111, kohya and SDXL layouts.

The command line lives in mmti/cli/convert_embeddings.py (installed: mmti-convert).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout
from mmti.cli.convert_embeddings import *  # noqa: E402,F401,F403  (main, cli, helpers)
from mmti.cli.convert_embeddings import cli  # noqa: E402

if __name__ == '__main__':
    cli()
