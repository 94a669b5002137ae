"""mmti: config-driven Textual Inversion for Stable Diffusion on mmengine."""
__version__ = '0.1.0'
