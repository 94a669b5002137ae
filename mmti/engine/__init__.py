from .distributed import prepare_launch
from .hooks import CheckpointHook, EmbeddingSaveHook, ValidationSampleHook
from .optim import TrainableParamsOptimWrapperConstructor

__all__ = ['CheckpointHook', 'EmbeddingSaveHook', 'TrainableParamsOptimWrapperConstructor',
           'ValidationSampleHook', 'prepare_launch']
