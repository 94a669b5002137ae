"""Train a Textual Inversion embedding from a config.

    python tools/train.py configs/textual_inversion_tiny.py
    bash tools/dist_train.sh configs/textual_inversion.py 8
"""
import argparse
import os
import os.path as osp
import sys

import torch.distributed as dist
from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout
from mmti.engine import NonFiniteLossError, build_runner, prepare_launch  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a Textual Inversion embedding')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs, checkpoints and embeddings go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the latest checkpoint in the work dir, or from PATH')
    parser.add_argument('--amp', action='store_true', help='mixed precision (GPU)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_cfg.max_iters=500')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args: argparse.Namespace) -> Config:
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise SystemExit(f'--resume: checkpoint {args.resume} does not exist.')
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = build_config(args)
    prepare_launch(cfg, args.launcher)
    try:
        runner = build_runner(cfg)
    except (ValueError, OSError) as err:  # bad config or data: one line, no traceback
        raise SystemExit(f'tools/train.py: error: {err}') from None
    try:
        runner.train()
    except NonFiniteLossError as err:
        raise SystemExit(f'tools/train.py: error: {err}') from None
    # A process that exits with its group alive can abort at interpreter exit
    # ("terminate called without an active exception": gloo's threads still
    # hold work; pytorch/pytorch#190489), failing a finished run. Only after
    # success: a rank that failed mid-collective would wait here for the others.
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
