"""Drawing scenes from a seed, and the concepts pretraining never shows."""
import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .scene import Scene
from .vocabulary import BACKGROUNDS, COLOURS, PATTERNS, POSITIONS, SHAPES, SIZES

# Attribute combinations left out of pretraining, for Textual Inversion to
# learn. Each part (shape, colour, pattern) is common in pretraining on its
# own; only the combination is new, so an embedding has something to compose.
HELD_OUT_CONCEPTS: dict[str, dict] = {
    'purple-dotted-star': dict(shape='star', colour='purple', pattern='dotted'),
    'orange-striped-triangle': dict(shape='triangle', colour='orange', pattern='striped'),
    'green-dotted-cross': dict(shape='cross', colour='green', pattern='dotted'),
}

# What makes a held-out concept: the object, not where or on what it is drawn.
CONCEPT_ATTRIBUTES = ('shape', 'colour', 'pattern')

_CHOICES = (('shape', SHAPES), ('colour', tuple(COLOURS)), ('size', SIZES),
            ('position', POSITIONS), ('background', tuple(BACKGROUNDS)), ('pattern', PATTERNS))
# A redraw loop that never ends means the exclusions rule out every scene.
_MAX_DRAWS = 10_000


def matches(scene: Scene, attributes: Mapping[str, str]) -> bool:
    """Whether ``scene`` has every attribute value in ``attributes``."""
    return all(getattr(scene, key) == value for key, value in attributes.items())


def is_held_out(scene: Scene) -> bool:
    """Whether ``scene`` shows one of ``HELD_OUT_CONCEPTS``."""
    return any(matches(scene, concept) for concept in HELD_OUT_CONCEPTS.values())


def _visible(scene: Scene) -> bool:
    # A shape in its background's colour would be invisible yet captioned.
    return scene.colour != scene.background


def sample_scene(rng: np.random.Generator,
                 exclude: Iterable[Mapping[str, str]] = ()) -> Scene:
    """A uniformly drawn visible scene matching none of ``exclude``.

    Rejected scenes are redrawn from the same generator, so the result is
    still a function of the generator's state.
    """
    exclude = list(exclude)
    for _ in range(_MAX_DRAWS):
        scene = Scene(**{name: values[int(rng.integers(len(values)))]
                         for name, values in _CHOICES})
        if _visible(scene) and not any(matches(scene, e) for e in exclude):
            return scene
    raise ValueError(f'No scene found in {_MAX_DRAWS} draws; exclude={exclude} rules out '
                     'every scene.')


def vary_one(rng: np.random.Generator, scene: Scene,
             attributes: Sequence[str] = CONCEPT_ATTRIBUTES,
             exclude: Iterable[Mapping[str, str]] = ()) -> Scene:
    """``scene`` with exactly one of ``attributes`` changed to another value.

    A contrastive batch of such near-twins is a set of hard negatives: only
    the changed attribute tells their captions apart, so a CLIP cannot
    ignore it (in a batch of random scenes, background and position alone
    nearly always suffice).
    """
    choices = dict(_CHOICES)
    unknown = [a for a in attributes if a not in choices]
    if unknown or not attributes:
        raise ValueError(f'Cannot vary {list(attributes)}; choose from {list(choices)}.')
    exclude = list(exclude)
    for _ in range(_MAX_DRAWS):
        name = attributes[int(rng.integers(len(attributes)))]
        others = [v for v in choices[name] if v != getattr(scene, name)]
        variant = dataclasses.replace(scene, **{name: others[int(rng.integers(len(others)))]})
        if _visible(variant) and not any(matches(variant, e) for e in exclude):
            return variant
    raise ValueError(f'No variant of {scene} found in {_MAX_DRAWS} draws.')


def near_twins(rng: np.random.Generator, n: int,
               attributes: Sequence[str] = CONCEPT_ATTRIBUTES,
               exclude: Iterable[Mapping[str, str]] = ()) -> list[Scene]:
    """A drawn scene and ``n - 1`` distinct variants of it (:func:`vary_one`).

    Distinct, so no two captions of the group are the same: a contrastive
    loss would otherwise be told to tell identical pairs apart.
    """
    exclude = list(exclude)
    scenes = [sample_scene(rng, exclude)]
    for _ in range(_MAX_DRAWS):
        if len(scenes) == n:
            return scenes
        variant = vary_one(rng, scenes[0], attributes, exclude)
        if variant not in scenes:
            scenes.append(variant)
    raise ValueError(f'Could not find {n} distinct variants of {scenes[0]} varying {attributes}.')


def scene_for_index(seed: int, index: int,
                    exclude: Iterable[Mapping[str, str]] = ()) -> Scene:
    """The scene number ``index`` of the world ``seed``.

    Keyed by ``(seed, index)`` alone, so any process draws the same scene for
    an index without drawing the ones before it.

    Args:
        seed: The world's seed (>= 0).
        index: The scene's number (>= 0).
        exclude: Attribute dicts (like ``HELD_OUT_CONCEPTS.values()``); a scene
            matching any of them is redrawn.
    """
    if seed < 0 or index < 0:
        raise ValueError(f'seed and index must be >= 0, got {seed}, {index}.')
    return sample_scene(np.random.default_rng([seed, index]), exclude)


def concept_scenes(name: str, n: int, seed: int = 0) -> list[Scene]:
    """``n`` scenes of the held-out concept ``name``, other attributes varied.

    Distinct while ``n`` does not exceed the number of visible variations of
    the concept; past that, the variations repeat in the same order.
    """
    if name not in HELD_OUT_CONCEPTS:
        raise KeyError(f'Unknown concept {name!r}; choose from {list(HELD_OUT_CONCEPTS)}.')
    if n < 0:
        raise ValueError(f'n must be >= 0, got {n}.')
    concept = HELD_OUT_CONCEPTS[name]
    free = [(attr, values) for attr, values in _CHOICES if attr not in concept]
    variants = [Scene(**concept, **dict(zip([a for a, _ in free], combo)))
                for combo in itertools.product(*(values for _, values in free))]
    variants = [s for s in variants if _visible(s)]
    # A shuffle without replacement: the few training images should differ.
    # The concept name is mixed in so concepts do not vary in lockstep.
    key = [seed, *name.encode()]
    order = np.random.default_rng(key).permutation(len(variants))
    return [variants[order[i % len(variants)]] for i in range(n)]
