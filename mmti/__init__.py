"""mmti: config-driven Textual Inversion for Stable Diffusion on mmengine."""
from .version import __version__

__all__ = ['__version__']
