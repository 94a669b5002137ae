from .atomic_checkpoint_hook import AtomicCheckpointHook
from .batched_runtime_info_hook import BatchedRuntimeInfoHook
from .concept_queue_hook import ConceptQueueHook
from .curves_hook import CurvesHook
from .embedding_save_hook import EmbeddingSaveHook
from .export_hook import ExportHook
from .learning_signal_hook import LearningSignalHook
from .non_finite import NonFiniteLossError
from .non_finite_loss_hook import NonFiniteLossHook
from .progress_bar_hook import ProgressBarHook
from .similarity_curve_hook import SimilarityCurveHook
from .sync_points import is_sync_point
from .validation_sample_hook import ValidationSampleHook

__all__ = ['AtomicCheckpointHook', 'BatchedRuntimeInfoHook', 'ConceptQueueHook', 'CurvesHook', 'EmbeddingSaveHook',
           'ExportHook', 'LearningSignalHook', 'NonFiniteLossError', 'NonFiniteLossHook', 'ProgressBarHook',
           'SimilarityCurveHook', 'ValidationSampleHook', 'is_sync_point']
