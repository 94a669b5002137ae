from .checkpoint_hook import CheckpointHook
from .embedding_save_hook import EmbeddingSaveHook
from .validation_sample_hook import ValidationSampleHook

__all__ = ['CheckpointHook', 'EmbeddingSaveHook', 'ValidationSampleHook']
