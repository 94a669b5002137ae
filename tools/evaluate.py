"""Measure a learned concept with CLIP (the paper's image and text similarity).

The command line lives in mmti/cli/evaluate.py (installed: mmti-eval).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout
from mmti.cli.evaluate import *  # noqa: E402,F401,F403  (main, cli, helpers)
from mmti.cli.evaluate import cli  # noqa: E402

if __name__ == '__main__':
    cli()
