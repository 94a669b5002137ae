"""Models that pretrain the toy world's CLIP, VAE and Stable Diffusion."""
from .autoencoder_pretraining import AutoencoderPretraining
from .contrastive_clip import ContrastiveCLIP
from .diffusion_pretraining import DiffusionPretraining

__all__ = ['AutoencoderPretraining', 'ContrastiveCLIP', 'DiffusionPretraining']
