"""VAE latent distributions of training images, each image variant encoded once."""
from collections.abc import Sequence

import torch

from .sample_noise import weights_dtype


def encode_posterior(vae, images: torch.Tensor, keys: Sequence[str | None] | None = None,
                     cache: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the VAE's latent distribution for each image.

    With a cache and keys given (one per image, naming its variant: image,
    crop, flip), each variant is encoded once, on its own, so its value never
    depends on which batch it first came in (resumed runs stay bitwise
    identical); later batches reuse it.

    Args:
        vae: diffusers ``AutoencoderKL``.
        images: ``[B, 3, H, W]`` in [-1, 1].
        keys: Variant keys; a None key (or no keys) disables the cache.
        cache: ``{key: (mean, std)}``, filled in place; None disables it.
    """
    if cache is None or keys is None or any(k is None for k in keys):
        posterior = vae.encode(images.to(weights_dtype(vae))).latent_dist
        return posterior.mean, posterior.std
    for i, key in enumerate(keys):
        if key not in cache:
            posterior = vae.encode(images[i:i + 1].to(weights_dtype(vae))).latent_dist
            cache[key] = (posterior.mean[0], posterior.std[0])
    cached = [cache[k] for k in keys]
    return torch.stack([m for m, _ in cached]), torch.stack([s for _, s in cached])
