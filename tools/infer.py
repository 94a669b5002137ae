"""Sample images with learned embeddings.

The command line lives in mmti/cli/infer.py (installed: mmti-infer).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout
from mmti.cli.infer import *  # noqa: E402,F401,F403  (main, cli, helpers)
from mmti.cli.infer import cli  # noqa: E402

if __name__ == '__main__':
    cli()
