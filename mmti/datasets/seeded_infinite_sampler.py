"""An endless, seeded sample order that is the same for any process count."""
import itertools
from collections.abc import Iterator

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmti.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class SeededInfiniteSampler(Sampler):
    """Yield ``epoch * len(dataset) + i`` for shuffled ``i``, forever.

    There is one global stream of indices; process ``rank`` takes every
    ``world_size``-th element. So ``N`` processes with batch ``b`` see, step
    by step, exactly the samples one process with batch ``N * b`` sees. The
    epoch stays in the index so the dataset can key each sample's random
    choices by it (a sample seen in epoch 2 gets fresh augmentation).

    Args:
        dataset: Any sized dataset.
        shuffle: Shuffle within each epoch.
        seed: Order seed; None agrees on a random one across processes.
    """

    def __init__(self, dataset, shuffle: bool = True, seed: int | None = None):
        self.dataset = dataset
        self.size = len(dataset)
        if self.size == 0:
            raise ValueError('SeededInfiniteSampler needs a non-empty dataset.')
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.rank, self.world_size = get_dist_info()
        self.start = 0

    def seek(self, consumed: int) -> None:
        """Start the next iteration after ``consumed`` samples of this process."""
        self.start = int(consumed)

    def global_stream(self) -> Iterator[int]:
        for epoch in itertools.count():
            if self.shuffle:
                # Keyed by (seed, epoch), not seed + epoch: neighbouring seeds
                # must not replay each other's epochs.
                epoch_seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
                generator = torch.Generator().manual_seed(epoch_seed)
                order = torch.randperm(self.size, generator=generator).tolist()
            else:
                order = range(self.size)
            base = epoch * self.size
            yield from (base + i for i in order)

    def __iter__(self) -> Iterator[int]:
        first = self.start * self.world_size + self.rank
        return itertools.islice(self.global_stream(), first, None, self.world_size)

    def __len__(self) -> int:
        return self.size
