"""Captioned scenes of the toy world, for pretraining a toy text-to-image model."""
import numpy as np
import torch
from torch.utils.data import Dataset

from mmti.registry import DATASETS
from mmti.toy_world import HELD_OUT_CONCEPTS, caption, render_scene, sample_scene


@DATASETS.register_module()
class ToyWorldDataset(Dataset):
    """Rendered toy-world scenes with their captions, packed like ``PackInputs``.

    Sample ``index`` is a function of ``(seed, index)`` alone: one generator
    keyed by both draws the scene (the same scene ``scene_for_index`` gives),
    then whether its caption is dropped, then its noise seed. Indices past
    ``len(self)`` are valid and mean later epochs, as in
    ``TextualInversionDataset``.

    Args:
        length: Samples per epoch.
        seed: The world's seed.
        size: Image side in pixels.
        exclude_held_out: Leave out ``HELD_OUT_CONCEPTS``, so Textual Inversion
            can later learn them as new concepts.
        caption_dropout: Probability of an empty caption, which trains the
            unconditional prediction classifier-free guidance needs.
    """

    def __init__(self,
                 length: int,
                 seed: int = 0,
                 size: int = 64,
                 exclude_held_out: bool = True,
                 caption_dropout: float = 0.1):
        if length < 1:
            raise ValueError(f'length must be >= 1, got {length}.')
        if seed < 0:
            raise ValueError(f'seed must be >= 0, got {seed}.')
        if size < 8:
            raise ValueError(f'size must be >= 8, got {size}.')
        if not 0.0 <= caption_dropout <= 1.0:
            raise ValueError(f'caption_dropout must be in [0, 1], got {caption_dropout}.')
        self.length = int(length)
        self.seed = int(seed)
        self.size = int(size)
        self.exclude = tuple(HELD_OUT_CONCEPTS.values()) if exclude_held_out else ()
        self.caption_dropout = float(caption_dropout)

    @property
    def metainfo(self) -> dict:
        return {'seed': self.seed, 'size': self.size,
                'held_out': [] if not self.exclude else list(HELD_OUT_CONCEPTS)}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            raise IndexError(f'Sample index must be >= 0, got {index}.')
        rng = np.random.default_rng([self.seed, index])
        scene = sample_scene(rng, self.exclude)
        # Drawn even when caption_dropout is 0, so the noise seed does not
        # depend on the dropout rate.
        dropped = rng.random() < self.caption_dropout
        noise_seed = int(rng.integers(2**63))
        pixels = np.asarray(render_scene(scene, size=self.size), dtype=np.float32)
        tensor = torch.from_numpy(pixels).permute(2, 0, 1).contiguous() / 127.5 - 1.0
        # No crop or resize: the micro-conditioning says "full image, as drawn".
        time_ids = torch.tensor([self.size, self.size, 0, 0, self.size, self.size],
                                dtype=torch.float32)
        return {'inputs': tensor, 'captions': '' if dropped else caption(scene),
                'noise_seeds': noise_seed, 'latent_keys': None, 'time_ids': time_ids}
