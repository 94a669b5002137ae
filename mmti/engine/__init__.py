from .config_checks import (check_cfg_options, check_config, check_pretrained_model,
                            fill_placeholder_token, load_user_config)
from .distributed import is_rank_zero, prepare_launch
from .hooks import (AtomicCheckpointHook, BatchedRuntimeInfoHook, EmbeddingSaveHook,
                    NonFiniteLossError, NonFiniteLossHook, ValidationSampleHook)
from .optim import TrainableParamsOptimWrapperConstructor
from .resume import RunFinished, read_last_checkpoint
from .runner_builder import build_runner, check_work_dir
from .seeking_iter_based_train_loop import SeekingIterBasedTrainLoop
from .work_dir_lock import WorkDirLock, refuse_previous_run, run_outputs

__all__ = [
    'AtomicCheckpointHook', 'BatchedRuntimeInfoHook', 'EmbeddingSaveHook', 'NonFiniteLossError',
    'NonFiniteLossHook', 'RunFinished', 'SeekingIterBasedTrainLoop',
    'TrainableParamsOptimWrapperConstructor', 'ValidationSampleHook', 'WorkDirLock', 'build_runner',
    'check_cfg_options', 'check_config', 'check_pretrained_model', 'check_work_dir',
    'fill_placeholder_token', 'is_rank_zero', 'load_user_config', 'prepare_launch',
    'read_last_checkpoint', 'refuse_previous_run', 'run_outputs'
]
