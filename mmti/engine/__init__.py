from .distributed import prepare_launch
from .iter_based_train_loop import IterBasedTrainLoop
from .hooks import CheckpointHook, EmbeddingSaveHook, ValidationSampleHook
from .optim import TrainableParamsOptimWrapperConstructor
from .runner_builder import build_runner, check_work_dir

__all__ = ['CheckpointHook', 'IterBasedTrainLoop', 'EmbeddingSaveHook', 'TrainableParamsOptimWrapperConstructor',
           'ValidationSampleHook', 'build_runner', 'check_work_dir', 'prepare_launch']
