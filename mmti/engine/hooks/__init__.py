from .checkpoint_hook import CheckpointHook
from .embedding_save_hook import EmbeddingSaveHook
from .export_hook import ExportHook
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .runtime_info_hook import RuntimeInfoHook
from .sync_points import is_sync_point
from .validation_sample_hook import ValidationSampleHook

__all__ = ['CheckpointHook', 'EmbeddingSaveHook', 'ExportHook', 'NonFiniteLossError', 'NonFiniteLossHook',
           'RuntimeInfoHook', 'ValidationSampleHook', 'is_sync_point']
