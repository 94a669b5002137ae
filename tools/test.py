"""Evaluate a trained concept through the runner (runner.test()).

The command line lives in mmti/cli/test.py (installed: mmti-test).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout
from mmti.cli.test import *  # noqa: E402,F401,F403  (main, cli, helpers)
from mmti.cli.test import cli  # noqa: E402

if __name__ == '__main__':
    cli()
