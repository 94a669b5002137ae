from .checkpoint_hook import CheckpointHook
from .embedding_save_hook import EmbeddingSaveHook
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .validation_sample_hook import ValidationSampleHook

__all__ = ['CheckpointHook', 'EmbeddingSaveHook', 'NonFiniteLossError', 'NonFiniteLossHook',
           'ValidationSampleHook']
