"""One error for a run that diverged, saying what was kept and how to go on."""
import re
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open

from mmti.utils import UserError


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss or the trainable parameters became NaN or infinite.

    A :class:`~mmti.utils.UserError`, so ``run_cli`` prints its one-line
    message (what diverged, what was kept, the fix) and exits with status 2.
    """


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True if every floating point tensor holds only finite values (one sync)."""
    tensors = [t.detach() for t in tensors if torch.is_tensor(t) and t.is_floating_point()]
    if not tensors:
        return True
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for tensor in tensors:
        by_device.setdefault(tensor.device, []).append(tensor)
    # The inf-norm propagates NaN and inf and never overflows on finite values.
    norms = [torch.nn.utils.get_total_norm(group, float('inf')).cpu()
             for group in by_device.values()]
    return bool(torch.isfinite(torch.stack(norms)).all())


def usable_rows(state_dict: dict, row_limit: float | None = None) -> bool:
    """Finite rows, none with a norm above ``row_limit`` (None: finite is enough)."""
    tensors = [t for t in state_dict.values() if torch.is_tensor(t) and t.is_floating_point()]
    if not all_finite(tensors):
        return False
    if row_limit is None:
        return True
    return all(float(t.detach().float().reshape(-1, t.shape[-1]).norm(dim=-1).max()) <= row_limit
               for t in tensors if t.ndim >= 1 and t.numel())


def last_checkpoint(work_dir: str | Path,
                    row_limit: float | None = None) -> tuple[str, int | None, bool] | None:
    """``(path, iteration, usable)`` of the checkpoint ``--resume`` would load.

    ``None`` if there is no ``last_checkpoint`` file; iteration ``None`` and
    usable ``False`` if the file it names cannot be read. Usable: its rows are
    finite and (with ``row_limit``) no row's norm is above it.
    """
    marker = Path(work_dir) / 'last_checkpoint'
    try:
        path = marker.read_text().strip()
    except OSError:
        return None
    try:
        # mmap: only the rows are read, however large the file.
        checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
        return (path, int(checkpoint['meta']['iter']),
                usable_rows(checkpoint['state_dict'], row_limit))
    except Exception:  # missing, truncated, not a checkpoint: say so, do not mask the stop
        return path, None, False


_SNAPSHOT_STEP = re.compile(r'-steps-(\d+)\.safetensors$')


def last_embedding_file(work_dir: str | Path, before: int) -> tuple[Path, int] | None:
    """The newest ``*-steps-N.safetensors`` with ``N <= before`` and finite rows."""
    found = []
    for path in Path(work_dir).glob('*-steps-*.safetensors'):
        match = _SNAPSHOT_STEP.search(path.name)
        if match and int(match.group(1)) <= before:
            found.append((int(match.group(1)), path))
    for step, path in sorted(found, reverse=True):
        try:
            with safe_open(str(path), 'pt') as f:
                if all_finite(f.get_tensor(key) for key in f.keys()):
                    return path, step
        except Exception:  # unreadable: not a file to point the user at
            continue
    return None


_CHECKPOINT_STEP = re.compile(r'^iter_(\d+)\.pth$')


def earlier_checkpoint(work_dir: str | Path, up_to: int,
                       row_limit: float | None = None) -> tuple[str, int] | None:
    """The newest ``iter_N.pth`` of ``work_dir`` with ``N <= up_to`` and usable rows."""
    found = sorted(((int(m.group(1)), path) for path in Path(work_dir).glob('iter_*.pth')
                    if (m := _CHECKPOINT_STEP.match(path.name)) and int(m.group(1)) <= up_to),
                   reverse=True)
    for step, path in found:
        try:
            checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
            if usable_rows(checkpoint['state_dict'], row_limit):
                return str(path), step
        except Exception:  # unreadable: not a file to point the user at
            continue
    return None


def stop_message(work_dir: str | Path, problem: str, step: int,
                 row_limit: float | None = None) -> str:
    """One line: ``problem``, what on disk is whole and finite, and the fix.

    ``step`` is the last iteration whose rows can be trusted: a checkpoint
    after it holds the rows that diverged (resuming it, even at a lower
    learning rate, would meet the same non-finite loss), so an earlier one
    is named. With ``row_limit``, a checkpoint whose rows are finite but
    have a norm above it (blown up on the way to the non-finite values) is
    not named either.
    """
    kept = []
    checkpoint = last_checkpoint(work_dir, row_limit)
    fix = "lower optim_wrapper.optimizer.lr (or use model.dtype='fp32')"
    if checkpoint is not None and checkpoint[2] and checkpoint[1] is not None \
            and checkpoint[1] <= step:
        path, ckpt_step, _ = checkpoint
        kept.append(f'checkpoint {path} (iteration {ckpt_step}; last_checkpoint points at it)')
        fix += f', then --resume {path}'
    elif checkpoint is None:
        kept.append('no checkpoint yet')
        fix += ' and train again'
    else:
        if checkpoint[2]:  # usable, but after the last trusted step
            why = f'it holds the rows of iteration {checkpoint[1]}, which gave the non-finite values'
        elif row_limit is not None:
            why = 'its rows are unreadable, not finite or blown up'
        else:
            why = 'it is unreadable or not finite'
        earlier = earlier_checkpoint(work_dir, step, row_limit)
        if earlier is not None:
            kept.append(f'checkpoint {earlier[0]} (iteration {earlier[1]}; not last_checkpoint\'s '
                        f'{checkpoint[0]}: {why})')
            fix += f', then --resume {earlier[0]}'
        else:
            kept.append(f'no usable checkpoint (last_checkpoint names {checkpoint[0]}: {why})')
            fix += ' and train again'
    embedding = last_embedding_file(work_dir, step)
    if embedding is not None:
        kept.append(f'{embedding[0].name} (iteration {embedding[1]})')
    return (f'{problem}; training stopped without saving anything from it. Kept: '
            f'{", ".join(kept)}. Fix: {fix}.')
