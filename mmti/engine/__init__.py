from .distributed import prepare_launch
from .hooks import (AtomicCheckpointHook, BatchedRuntimeInfoHook, EmbeddingSaveHook,
                    NonFiniteLossError, NonFiniteLossHook, ValidationSampleHook)
from .optim import TrainableParamsOptimWrapperConstructor
from .runner_builder import build_runner, check_work_dir, resume_checkpoint
from .seeking_iter_based_train_loop import SeekingIterBasedTrainLoop

__all__ = [
    'AtomicCheckpointHook', 'BatchedRuntimeInfoHook', 'EmbeddingSaveHook', 'NonFiniteLossError',
    'NonFiniteLossHook', 'SeekingIterBasedTrainLoop', 'TrainableParamsOptimWrapperConstructor',
    'ValidationSampleHook', 'build_runner', 'check_work_dir', 'prepare_launch', 'resume_checkpoint'
]
