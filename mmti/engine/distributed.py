"""Make mmengine's ``pytorch`` launcher work with and without a GPU."""
import os

import torch
import torch.distributed as dist
from mmengine.config import Config

from mmti.utils import UserError


def is_rank_zero() -> bool:
    """Whether this process is rank 0 (before the process group exists, from torchrun's env)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get('RANK', '0')) == 0


def prepare_launch(cfg: Config, launcher: str) -> None:
    """Adjust ``cfg`` for the launcher and, on CPU, start the process group.

    mmengine 0.10.7 always calls ``torch.cuda.set_device`` and wraps DDP with
    ``device_ids=[local_rank]``; both fail on a CPU-only machine. There we
    open a gloo group ourselves (mmengine then skips its own init) and wrap
    DDP without device ids. With GPUs, mmengine's path is used unchanged.
    """
    cfg.launcher = launcher
    if launcher == 'pytorch':
        # LOCAL_RANK is not asked for: tools/train.py sets it from --local-rank.
        missing = [name for name in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
                   if name not in os.environ]
        if missing:
            raise UserError(f'--launcher pytorch needs the environment torchrun sets '
                            f'({", ".join(missing)} missing); start it with bash '
                            'tools/dist_train.sh CONFIG NUM_PROCS, or drop --launcher for one '
                            'process.')
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise ValueError(f'Launcher {launcher!r} needs GPUs; on CPU use --launcher pytorch '
                         '(tools/dist_train.sh).')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    cfg.model_wrapper_cfg = wrapper
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', rank=int(os.environ['RANK']),
                                world_size=int(os.environ['WORLD_SIZE']))
