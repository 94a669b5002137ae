from .distributed import prepare_launch
from .hooks import (CheckpointHook, EmbeddingSaveHook, NonFiniteLossError, NonFiniteLossHook,
                    ValidationSampleHook)
from .iter_based_train_loop import IterBasedTrainLoop
from .optim import TrainableParamsOptimWrapperConstructor
from .runner_builder import build_runner, check_work_dir, resume_checkpoint

__all__ = [
    'CheckpointHook', 'EmbeddingSaveHook', 'IterBasedTrainLoop', 'NonFiniteLossError',
    'NonFiniteLossHook', 'TrainableParamsOptimWrapperConstructor', 'ValidationSampleHook',
    'build_runner', 'check_work_dir', 'prepare_launch', 'resume_checkpoint'
]
