from .atomic_checkpoint_hook import AtomicCheckpointHook
from .batched_runtime_info_hook import BatchedRuntimeInfoHook
from .embedding_save_hook import EmbeddingSaveHook
from .export_hook import ExportHook
from .non_finite import NonFiniteLossError
from .non_finite_loss_hook import NonFiniteLossHook
from .sync_points import is_sync_point
from .validation_sample_hook import ValidationSampleHook

__all__ = ['AtomicCheckpointHook', 'BatchedRuntimeInfoHook', 'EmbeddingSaveHook', 'ExportHook',
           'NonFiniteLossError', 'NonFiniteLossHook', 'ValidationSampleHook', 'is_sync_point']
