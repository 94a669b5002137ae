"""Train a Textual Inversion embedding from a config.

The command line lives in mmti/cli/train.py (installed: mmti-train).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout
from mmti.cli.train import *  # noqa: E402,F401,F403  (main, cli, helpers)
from mmti.cli.train import cli  # noqa: E402

if __name__ == '__main__':
    cli()
