"""Captioned scenes of the toy world, for pretraining a toy text-to-image model."""
import dataclasses

import numpy as np
import torch
from torch.utils.data import Dataset

from mmti.registry import DATASETS
from projects.toy_world.world import (CONCEPT_ATTRIBUTES, CONTEXT_ATTRIBUTES, HELD_OUT_CONCEPTS,
                            LOOK_ATTRIBUTES, Scene, caption, near_twins, render_scene,
                            sample_scene)


@DATASETS.register_module()
class ToyWorldDataset(Dataset):
    """Rendered toy-world scenes with their captions, packed like ``PackInputs``.

    Sample ``index`` is a function of ``(seed, index)`` alone: one generator
    keyed by both draws the scene (with ``group_size`` 1, the same scene
    ``scene_for_index`` gives),
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
        group_size: Consecutive indices in groups of this many share a
            scene, each member after the first with one of ``vary`` changed:
            hard negatives for contrastive training. Needs an unshuffled
            sampler and a batch size that is a multiple of it. 1 (the
            default) draws every scene independently.
        vary: The attributes a group's members may differ in.
        omit_context: Probability of leaving each of size, position and
            background out of a caption ("a red striped star on a blue
            background"): a CLIP trained so must match the object alone,
            so its image features weigh the object over the setting.
        omit_object: Probability of a caption with the object's words taken
            out and the whole setting said ("a small on the left on a blue
            background"): the form the paper's text similarity gives an edit
            prompt, so a CLIP trained so can score how well samples follow it.
            Only a group's first member may lose its object: its near-twins
            share the setting, so their object-less captions would be equal.
        omit_look: Probability of leaving each of colour and pattern unsaid
            ("a small triangle ..."), so a shape word alone means a shape of
            any look, as in real captions, instead of a blend of all looks.
    """

    def __init__(self,
                 length: int,
                 seed: int = 0,
                 size: int = 64,
                 exclude_held_out: bool = True,
                 caption_dropout: float = 0.1,
                 group_size: int = 1,
                 vary: tuple[str, ...] = CONCEPT_ATTRIBUTES,
                 omit_context: float = 0.0,
                 omit_object: float = 0.0,
                 omit_look: float = 0.0):
        if length < 1:
            raise ValueError(f'length must be >= 1, got {length}.')
        if seed < 0:
            raise ValueError(f'seed must be >= 0, got {seed}.')
        if size < 8:
            raise ValueError(f'size must be >= 8, got {size}.')
        if not 0.0 <= caption_dropout <= 1.0:
            raise ValueError(f'caption_dropout must be in [0, 1], got {caption_dropout}.')
        for name, p in (('omit_context', omit_context), ('omit_object', omit_object),
                        ('omit_look', omit_look)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f'{name} must be in [0, 1], got {p}.')
        if group_size < 1:
            raise ValueError(f'group_size must be >= 1, got {group_size}.')
        self.length = int(length)
        self.seed = int(seed)
        self.size = int(size)
        self.exclude = tuple(HELD_OUT_CONCEPTS.values()) if exclude_held_out else ()
        self.caption_dropout = float(caption_dropout)
        self.group_size = int(group_size)
        self.vary = tuple(vary)
        self.omit_context = float(omit_context)
        self.omit_object = float(omit_object)
        self.omit_look = float(omit_look)
        known = [f.name for f in dataclasses.fields(Scene)]
        if not self.vary or not set(self.vary) <= set(known):
            raise ValueError(f'vary must name attributes of a scene ({known}), got {vary}.')

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
        member = 0
        if self.group_size == 1:
            scene = sample_scene(rng, self.exclude)
        else:
            group, member = divmod(index, self.group_size)
            # The group is keyed by (seed, group, group_size), apart from any
            # single index's generator; each member draws it and takes its own.
            group_rng = np.random.default_rng([self.seed, group, self.group_size])
            scene = near_twins(group_rng, self.group_size, self.vary, self.exclude)[member]
        # Drawn even when caption_dropout is 0, so the noise seed does not
        # depend on the dropout rate.
        dropped = rng.random() < self.caption_dropout
        noise_seed = int(rng.integers(2**63))
        # Drawn whatever the probabilities, after the noise seed: caption
        # options never change an index's scene or noise.
        context_draws, object_draw = rng.random(len(CONTEXT_ATTRIBUTES)), rng.random()
        look_draws = rng.random(len(LOOK_ATTRIBUTES))
        if member == 0 and object_draw < self.omit_object:
            omit = ['object']
        else:
            omit = [name for name, u in zip(CONTEXT_ATTRIBUTES, context_draws)
                    if u < self.omit_context]
            omit += [name for name, u in zip(LOOK_ATTRIBUTES, look_draws)
                     if u < self.omit_look]
        pixels = np.asarray(render_scene(scene, size=self.size), dtype=np.float32)
        tensor = torch.from_numpy(pixels).permute(2, 0, 1).contiguous() / 127.5 - 1.0
        # No crop or resize: the micro-conditioning says "full image, as drawn".
        time_ids = torch.tensor([self.size, self.size, 0, 0, self.size, self.size],
                                dtype=torch.float32)
        return {'inputs': tensor, 'captions': '' if dropped else caption(scene, omit),
                'noise_seeds': noise_seed, 'latent_keys': None, 'time_ids': time_ids}
