"""Toy models pretrained on the synthetic world of :mod:`mmti.toy_world`."""
from .contrastive_clip import ContrastiveCLIP

__all__ = ['ContrastiveCLIP']
