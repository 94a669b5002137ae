from . import transforms  # noqa: F401  (registers the transforms)
from .seeded_infinite_sampler import SeededInfiniteSampler
from .templates import load_templates
from .textual_inversion_dataset import TextualInversionDataset

__all__ = ['SeededInfiniteSampler', 'TextualInversionDataset', 'load_templates']
