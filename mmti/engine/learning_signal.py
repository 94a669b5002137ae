"""The learning signal: the training objective on one fixed evaluation batch.

The per-step training loss cannot say when a concept is learned: each step
sees other images, timesteps and noise, and the timestep alone moves the loss
by an order of magnitude. Evaluated on inputs that never change (the same
images, captions, timesteps and noise, drawn once from the run's seed), the
same objective becomes a smooth curve of the rows alone, which falls while
the rows still learn something and flattens when they stop (Voronov et al.,
NeurIPS 2023, "Is This Loss Informative?").
"""
import math

import numpy as np
import torch

#: Fixed samples the signal is measured on, unless a config says otherwise.
DEFAULT_NUM_SAMPLES = 16
#: Steps between measurements, unless a config says otherwise.
DEFAULT_INTERVAL = 10

# Keeps the signal's noise apart from every training sample's noise seed,
# which the dataset draws from (seed, index) alone.
_SIGNAL_STREAM = 0x5167_4E41


def fixed_batch_size(num_samples: int, num_images: int | None) -> int:
    """``num_samples`` rounded up to a whole number of passes over the images,
    so every training image weighs the same in the signal."""
    if num_images is None or num_images <= 0:
        return num_samples
    return num_images * math.ceil(num_samples / num_images)


def signal_noise_seed(seed: int, position: int) -> int:
    """The noise seed (timestep, latent sample, noise) of one fixed sample."""
    return int(np.random.default_rng([seed, _SIGNAL_STREAM, position]).integers(2**63))


class FixedBatchLoss:
    """The model's denoising loss on a fixed set of samples.

    The samples are the dataset's first ``n`` indices (its images in order,
    each with the caption, crop and flip the dataset draws for that index),
    with noise seeds of their own. Computing it draws nothing from torch's
    global RNG, so training with the signal on follows the same trajectory
    as training with it off.

    Args:
        dataset: The training dataset (indexable; items as the dataloader sees them).
        collate_fn: The training dataloader's collate function.
        num_samples: At least this many samples (rounded up to whole passes
            over the dataset's images).
        seed: Draws the samples' timesteps and noise.
        batch_size: Samples per forward pass (memory, not the result).
    """

    def __init__(self, dataset, collate_fn, num_samples: int, seed: int, batch_size: int):
        if num_samples < 1:
            raise ValueError(f'The learning signal needs num_samples >= 1, got {num_samples}.')
        images = getattr(dataset, 'images', None)
        size = fixed_batch_size(num_samples, len(images) if images is not None else None)
        samples = []
        for position in range(size):
            sample = dict(dataset[position])
            sample['noise_seeds'] = signal_noise_seed(seed, position)
            samples.append(sample)
        self.batches = [collate_fn(samples[i:i + batch_size])
                        for i in range(0, size, max(1, batch_size))]
        self.num_samples = size

    @torch.no_grad()
    def __call__(self, model) -> float:
        """The mean loss of the fixed samples under the model's current rows."""
        total = 0.0
        for batch in self.batches:
            data = model.data_preprocessor(batch, False)
            if data.get('noise_seeds') is None:
                raise ValueError('The learning signal needs a dataset that gives every sample '
                                 'a noise seed (TextualInversionDataset does).')
            loss = model(**data, mode='loss')['loss']
            total += float(loss) * len(data['captions'])
        return total / self.num_samples


def concept_rows(model, tokens) -> torch.Tensor:
    """``tokens``' rows in every text encoder as one fp32 vector (a detached CPU copy)."""
    return torch.cat([rows.detach().float().cpu().flatten() for token in tokens
                      for rows in model.vocabulary.rows(token)])


def word_norms(model) -> list[float]:
    """Each text encoder's average word size: the mean norm of its vocabulary's rows."""
    return [float(torch.linalg.vector_norm(slot.table.base.weight.detach(), dim=1,
                                           dtype=torch.float32).mean())
            for slot in model.vocabulary.slots]


def word_size(model, tokens, norms: list[float]) -> float:
    """The size :func:`concept_rows` of ``tokens`` would have if every row
    were a word of average size (``norms``: :func:`word_norms`): the
    yardstick for how far rows moved. (Not the rows' own starting size,
    which a start from zeros makes 0.)"""
    return math.sqrt(sum(slot.table.concept_rows(t).shape[0] * norm ** 2
                         for slot, norm in zip(model.vocabulary.slots, norms) for t in tokens))


def distance_moved(start: torch.Tensor, now: torch.Tensor, size: float) -> float:
    """How far rows have moved from ``start``, in units of ``size`` (:func:`word_size`)."""
    return float((now - start).norm()) / size


def check_signal_settings(where: str, interval, num_samples, batch_size) -> tuple[int, int, int | None]:
    """``(interval, num_samples, batch_size)`` as whole numbers, or one error naming the setting."""
    def whole(name, value, least):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f'{where}.{name} must be a whole number >= {least}, got {value!r}.')
        return value
    return (whole('interval', interval, 1), whole('num_samples', num_samples, 1),
            None if batch_size is None else whole('batch_size', batch_size, 1))
