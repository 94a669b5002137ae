"""Make mmengine's ``pytorch`` launcher work with and without a GPU."""
import os

import torch
import torch.distributed as dist
from mmengine.config import Config


def prepare_launch(cfg: Config, launcher: str) -> None:
    """Adjust ``cfg`` for the launcher and, on CPU, start the process group.

    mmengine 0.10.7 always calls ``torch.cuda.set_device`` and wraps DDP with
    ``device_ids=[local_rank]``; both fail on a CPU-only machine. There we
    open a gloo group ourselves (mmengine then skips its own init) and wrap
    DDP without device ids. With GPUs, mmengine's path is used unchanged.
    """
    cfg.launcher = launcher
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
