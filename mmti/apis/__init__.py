"""High-level entry points for people who never open a config."""
from .inferencer import TextualInversionInferencer

__all__ = ['TextualInversionInferencer']
