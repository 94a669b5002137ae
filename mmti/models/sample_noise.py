"""Per-sample random draws, so a sample's noise does not depend on its batch."""
from collections.abc import Sequence

import torch


class SampleNoise:
    """One generator per sample (seeded by the dataset), or torch's global RNG.

    With seeds, the latent sample, timestep and noise of a sample depend on
    its seed alone, not on batch layout, process count or resume point.

    Args:
        seeds: One seed per sample; None draws from torch's global RNG.
        batch_size: Samples in the batch.
        device: Where the draws are made.
    """

    def __init__(self, seeds: Sequence[int] | None, batch_size: int, device: torch.device):
        self.device = device
        self.batch_size = batch_size
        self.generators = None
        if seeds is not None:
            if len(seeds) != batch_size:
                raise ValueError(f'{len(seeds)} noise seeds for a batch of {batch_size}.')
            self.generators = [torch.Generator(device=device).manual_seed(int(s) % 2**63)
                               for s in seeds]

    def randn(self, shape: torch.Size) -> torch.Tensor:
        if self.generators is None:
            return torch.randn((self.batch_size, *shape), device=self.device)
        return torch.stack([torch.randn(shape, generator=g, device=self.device)
                            for g in self.generators])

    def randint(self, low: int, high: int) -> torch.Tensor:
        """One integer in ``[low, high)`` per sample."""
        if self.generators is None:
            return torch.randint(low, high, (self.batch_size,), device=self.device)
        return torch.cat([torch.randint(low, high, (1,), generator=g, device=self.device)
                          for g in self.generators])


def timestep_range(train_timesteps: Sequence[int] | None, num_train_timesteps: int) -> tuple[int, int]:
    """``[first, end)`` of the timesteps training draws from; None: all of them."""
    if train_timesteps is None:
        return 0, num_train_timesteps
    bounds = tuple(train_timesteps)
    if (len(bounds) != 2 or not all(isinstance(b, int) for b in bounds)
            or not 0 <= bounds[0] < bounds[1] <= num_train_timesteps):
        raise ValueError(
            f'train_timesteps={train_timesteps!r} is not a range of this scheduler\'s timesteps: '
            f'give (first, end) with 0 <= first < end <= {num_train_timesteps} (the end is '
            'excluded), e.g. (0, 800), or None for all of them.')
    return bounds


def weights_dtype(module: torch.nn.Module) -> torch.dtype:
    """dtype of a uniformly cast module's weights.

    diffusers' ``.dtype`` walks every submodule (~1 ms on SD); the first
    parameter says the same.
    """
    return next(module.parameters()).dtype
