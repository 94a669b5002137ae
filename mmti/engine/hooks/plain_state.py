"""mmengine's message hub state as tensors and builtins, so checkpoints load
with ``torch.load(weights_only=True)`` (the torch >= 2.6 default)."""
import numpy as np
import torch
from mmengine.logging import HistoryBuffer

_BUFFER_TAG = '__mmti_history_buffer__'


def to_plain(value):
    """numpy -> torch/python, HistoryBuffer -> tagged dict, recursively.

    mmengine pickles HistoryBuffer together with references to its methods
    (``getattr``) and numpy objects, which ``torch.load(weights_only=True)``
    rightly refuses; tensors and builtins load safely.
    """
    if isinstance(value, HistoryBuffer):
        log, count = value.data
        return {_BUFFER_TAG: True, 'max_length': value.max_length,
                'log': torch.from_numpy(np.asarray(log, dtype=np.float64)),
                'count': torch.from_numpy(np.asarray(count, dtype=np.int64))}
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((k, to_plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    return value


def from_plain(value):
    """The inverse of :func:`to_plain` for HistoryBuffers (numbers stay as loaded).

    ``--resume`` on a GPU loads the checkpoint's tensors onto the GPU, so the
    buffers are read with ``tolist()``, which works on any device.
    """
    if isinstance(value, dict) and value.get(_BUFFER_TAG):
        return HistoryBuffer(value['log'].tolist(), value['count'].tolist(),
                             max_length=value['max_length'])
    if isinstance(value, dict):
        return type(value)((k, from_plain(v)) for k, v in value.items())
    return value
