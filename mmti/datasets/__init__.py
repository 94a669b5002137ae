from . import transforms  # noqa: F401  (registers the transforms)
from .concept_batch_sampler import ConceptBatchSampler, ConceptQueue
from .concept_list_dataset import ConceptListDataset
from .seeded_infinite_sampler import SeededInfiniteSampler
from .templates import load_templates
from .textual_inversion_dataset import TextualInversionDataset

__all__ = ['ConceptBatchSampler', 'ConceptListDataset', 'ConceptQueue', 'SeededInfiniteSampler',
           'TextualInversionDataset', 'load_templates']
