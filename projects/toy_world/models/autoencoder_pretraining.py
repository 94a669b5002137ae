"""Pretrain a diffusers ``AutoencoderKL`` (the toy SD's VAE) from scratch.

The objective is the one of Stable Diffusion's first stage without the
perceptual and adversarial terms: reconstruct the image from a *sample* of the
posterior, plus a very small KL pull towards N(0, I) that keeps the latent
scale bounded.
"""
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from mmengine.model import BaseModel

from mmti.fileio import atomic_folder
from mmti.registry import MODELS
from mmti.models.data_preprocessor import TextualInversionDataPreprocessor
from mmti.models.sample_noise import SampleNoise


def atomic_export(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary folder that then replaces ``path``;
    an interrupted export leaves the previous ``path`` (if any) untouched."""
    with atomic_folder(path) as tmp:
        write(tmp)
    return Path(path)


@MODELS.register_module()
class AutoencoderPretraining(BaseModel):
    """Train ``AutoencoderKL(**vae_config)`` to reconstruct images.

    Args:
        vae_config: Keyword arguments of ``diffusers.AutoencoderKL``.
        reconstruction: 'l1' or 'mse', per pixel value, images in [-1, 1].
        kl_weight: Weight of the KL term. The KL is summed over the latent
            and divided by the number of pixel values (3*H*W), so the weight
            means what LDM's ``kl_weight`` (1e-6) means for its summed losses.
        auto_scaling_factor: At export, set ``scaling_factor`` to 1 / (std of
            the posterior samples seen in training, a running average), so
            the diffusion model sees latents of about unit variance.
        data_preprocessor: Defaults to ``TextualInversionDataPreprocessor``.

    The loss dict is ``{'loss': total, 'rec': ..., 'kl': ...}``: mmengine sums
    every key containing "loss", so the parts are named without it (logged,
    not counted twice).
    """

    def __init__(self,
                 vae_config: dict,
                 reconstruction: str = 'l1',
                 kl_weight: float = 1e-6,
                 auto_scaling_factor: bool = True,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None):
        super().__init__(
            data_preprocessor=data_preprocessor or dict(type=TextualInversionDataPreprocessor),
            init_cfg=init_cfg)
        if reconstruction not in ('l1', 'mse'):
            raise ValueError(f"reconstruction must be 'l1' or 'mse', got {reconstruction!r}.")
        if kl_weight < 0:
            raise ValueError(f'kl_weight must be >= 0, got {kl_weight}.')
        self.vae = AutoencoderKL(**dict(vae_config))
        self.reconstruction = reconstruction
        self.kl_weight = float(kl_weight)
        self.auto_scaling_factor = auto_scaling_factor
        # Running second moment of the (unscaled) posterior samples; saved in
        # checkpoints so a resumed run exports the same scaling factor.
        self.register_buffer('latent_sq_mean', torch.zeros((), dtype=torch.float64))
        self.register_buffer('latent_updates', torch.zeros((), dtype=torch.long))

    def loss(self, images: torch.Tensor,
             noise_seeds: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        rng = SampleNoise(noise_seeds, images.shape[0], images.device)
        posterior = self.vae.encode(images).latent_dist
        latents = posterior.mean + posterior.std * rng.randn(posterior.mean.shape[1:])
        recon = self.vae.decode(latents).sample
        if self.reconstruction == 'l1':
            rec = F.l1_loss(recon, images)
        else:
            rec = F.mse_loss(recon, images)
        kl = posterior.kl().mean() / images[0].numel()
        if self.training:
            self._track_latent_scale(latents.detach())
        return {'loss': rec + self.kl_weight * kl, 'rec': rec.detach(), 'kl': kl.detach()}

    @torch.no_grad()
    def _track_latent_scale(self, latents: torch.Tensor) -> None:
        sq = latents.double().pow(2).mean()
        n = int(self.latent_updates)
        momentum = max(1.0 / (n + 1), 0.01)  # plain mean at first, then an EMA
        self.latent_sq_mean.mul_(1 - momentum).add_(momentum * sq)
        self.latent_updates.add_(1)

    def scaling_factor(self) -> float:
        """The factor export writes: 1/RMS of training latents (or the config's)."""
        if not self.auto_scaling_factor or int(self.latent_updates) == 0:
            return float(self.vae.config.scaling_factor)
        return float(1.0 / self.latent_sq_mean.clamp_min(1e-12).sqrt())

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Decode of the posterior mean (deterministic), images in [-1, 1]."""
        return self.vae.decode(self.vae.encode(images).latent_dist.mean).sample

    def forward(self, inputs: torch.Tensor, captions=None, noise_seeds=None,
                latent_keys=None, time_ids=None, mode: str = 'loss'):
        if mode == 'loss':
            return self.loss(inputs, noise_seeds)
        if mode in ('predict', 'tensor'):
            return self.reconstruct(inputs)
        raise ValueError(f'Unknown mode {mode!r}.')

    def export(self, path: str | os.PathLike) -> Path:
        """Write the VAE as a diffusers folder (``AutoencoderKL.from_pretrained(path)``), atomically."""
        factor = self.scaling_factor()

        def write(tmp: Path) -> None:
            old = self.vae.config.scaling_factor
            self.vae.register_to_config(scaling_factor=factor)
            try:
                self.vae.save_pretrained(tmp)
            finally:
                self.vae.register_to_config(scaling_factor=old)

        return atomic_export(path, write)
