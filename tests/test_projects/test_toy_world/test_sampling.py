"""Toy-world sampling: determinism, coverage, held-out concepts never in pretraining."""
import itertools

import pytest

import dataclasses

import numpy as np

from projects.toy_world.world import (BACKGROUNDS, COLOURS, CONCEPT_ATTRIBUTES, HELD_OUT_CONCEPTS, PATTERNS,
                            POSITIONS, SHAPES, SIZES, Scene, concept_scenes, is_held_out, matches,
                            near_twins, scene_for_index, vary_one)

EXCLUDE = tuple(HELD_OUT_CONCEPTS.values())
VALUES = {'shape': SHAPES, 'colour': tuple(COLOURS), 'size': SIZES, 'position': POSITIONS,
          'background': tuple(BACKGROUNDS), 'pattern': PATTERNS}


@pytest.fixture(scope='module')
def pretraining_scenes():
    return [scene_for_index(0, i, EXCLUDE) for i in range(5000)]


def test_deterministic_per_seed_and_index():
    assert scene_for_index(3, 17) == scene_for_index(3, 17)
    assert [scene_for_index(0, i) for i in range(50)] == [scene_for_index(0, i) for i in range(50)]
    assert [scene_for_index(0, i) for i in range(50)] != [scene_for_index(1, i) for i in range(50)]
    # Not order-dependent: drawing others first does not change an index's scene.
    later = scene_for_index(0, 999)
    for i in range(10):
        scene_for_index(0, i)
    assert scene_for_index(0, 999) == later


def test_covers_every_value(pretraining_scenes):
    scenes = pretraining_scenes[:2000]
    for attr, values in VALUES.items():
        seen = {getattr(s, attr) for s in scenes}
        assert seen == set(values), attr


def test_every_held_out_part_appears_separately(pretraining_scenes):
    for concept in HELD_OUT_CONCEPTS.values():
        for attr, value in concept.items():
            assert any(getattr(s, attr) == value for s in pretraining_scenes)
        # And every pair of its parts, so only the whole combination is new.
        for (a, x), (b, y) in itertools.combinations(concept.items(), 2):
            assert any(matches(s, {a: x, b: y}) for s in pretraining_scenes), (a, x, b, y)


def test_no_held_out_scene_in_pretraining(pretraining_scenes):
    assert not any(is_held_out(s) for s in pretraining_scenes)
    # Without exclusion they do occur (the check above is not vacuous).
    assert any(is_held_out(scene_for_index(0, i)) for i in range(2000))


def test_shape_never_in_background_colour(pretraining_scenes):
    assert all(s.colour != s.background for s in pretraining_scenes)


def test_impossible_exclusion_raises():
    with pytest.raises(ValueError, match='rules out'):
        scene_for_index(0, 0, exclude=[{}])


def test_held_out_concepts():
    assert len(HELD_OUT_CONCEPTS) == 3
    for name, concept in HELD_OUT_CONCEPTS.items():
        assert set(concept) <= set(VALUES)
        assert all(v in VALUES[k] for k, v in concept.items())
        assert is_held_out(Scene(**{**dict(size='small', position='left', background='white',
                                           pattern='plain', shape='circle', colour='red'),
                                    **concept}))
    assert not is_held_out(Scene('star', 'purple', 'small', 'left', 'white', 'striped'))


@pytest.mark.parametrize('name', list(HELD_OUT_CONCEPTS))
def test_concept_scenes(name):
    scenes = concept_scenes(name, 13, seed=0)
    assert len(scenes) == 13 and len(set(scenes)) == 13  # distinct views
    assert all(matches(s, HELD_OUT_CONCEPTS[name]) and is_held_out(s) for s in scenes)
    assert all(s.colour != s.background for s in scenes)
    # The other attributes vary.
    assert len({s.position for s in scenes}) > 1 and len({s.background for s in scenes}) > 1
    assert scenes == concept_scenes(name, 13, seed=0)
    assert scenes != concept_scenes(name, 13, seed=1)
    assert concept_scenes(name, 5, seed=0) == scenes[:5]


def test_concept_scenes_errors():
    with pytest.raises(KeyError, match='Unknown concept'):
        concept_scenes('blue-cat', 3)
    assert len(concept_scenes('purple-dotted-star', 100)) == 100  # repeats past the variants


def _differences(a: Scene, b: Scene) -> list[str]:
    return [f.name for f in dataclasses.fields(Scene) if getattr(a, f.name) != getattr(b, f.name)]


def test_vary_one_changes_exactly_one_concept_attribute():
    rng = np.random.default_rng(7)
    changed = set()
    for _ in range(300):
        scene = scene_for_index(3, int(rng.integers(1000)), EXCLUDE)
        variant = vary_one(rng, scene, exclude=EXCLUDE)
        diff = _differences(scene, variant)
        assert len(diff) == 1 and diff[0] in CONCEPT_ATTRIBUTES
        assert variant.colour != variant.background and not is_held_out(variant)
        changed.update(diff)
    assert changed == set(CONCEPT_ATTRIBUTES)
    only_pattern = vary_one(rng, Scene('star', 'red', 'small', 'left', 'blue'), ['pattern'])
    assert _differences(only_pattern, Scene('star', 'red', 'small', 'left', 'blue')) == ['pattern']
    with pytest.raises(ValueError, match='Cannot vary'):
        vary_one(rng, only_pattern, ['mood'])


def test_near_twins_are_distinct_variants_of_one_scene():
    for seed in range(20):
        group = near_twins(np.random.default_rng(seed), 4, exclude=EXCLUDE)
        assert len(group) == 4 and len(set(group)) == 4
        assert all(len(_differences(group[0], s)) == 1 for s in group[1:])
        assert not any(is_held_out(s) for s in group)
    assert near_twins(np.random.default_rng(1), 4) == near_twins(np.random.default_rng(1), 4)
    with pytest.raises(ValueError, match='distinct variants'):
        near_twins(np.random.default_rng(0), 5, ['pattern'])  # only 3 patterns exist
