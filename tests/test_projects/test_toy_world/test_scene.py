"""Toy-world scenes: rendering (size, determinism, colours, positions, patterns) and captions."""
import numpy as np
import pytest

from projects.toy_world.world import (BACKGROUNDS, COLOURS, CONTEXT_ATTRIBUTES, Scene, caption,
                            concept_template, render_scene)
from projects.toy_world.world.scene import pattern_colour


def _pixels(scene, **kwargs):
    return np.asarray(render_scene(scene, **kwargs), dtype=np.int32)


def _dilate(mask, steps):
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _shape_mask(scene, size=64):
    # Pixels that differ clearly from the background belong to the shape.
    arr = _pixels(scene, size=size)
    return np.abs(arr - np.array(BACKGROUNDS[scene.background])).sum(-1) > 60


@pytest.mark.parametrize('size', [32, 64, 48])
def test_size_and_mode(size):
    img = render_scene(Scene('star', 'red', 'small', 'left', 'white', 'dotted'), size=size)
    assert img.size == (size, size) and img.mode == 'RGB'


def test_rendering_is_deterministic():
    scene = Scene('triangle', 'orange', 'large', 'top', 'gray', 'striped')
    assert render_scene(scene).tobytes() == render_scene(scene).tobytes()


def test_colours():
    arr = _pixels(Scene('circle', 'red', 'large', 'center', 'blue'))
    centre, corner = arr[32, 32], arr[0, 0]
    assert np.abs(centre - COLOURS['red']).max() <= 10
    assert centre[0] > 150 and centre[1] < 80 and centre[2] < 80
    assert np.abs(corner - BACKGROUNDS['blue']).max() <= 10
    assert corner[2] > 150 and corner[0] < 100


def test_anti_aliased_edges():
    # Lanczos shrinking leaves in-between colours at the rim, not only two values.
    arr = _pixels(Scene('circle', 'red', 'large', 'center', 'white'))
    assert len({tuple(p) for p in arr.reshape(-1, 3)}) > 4


@pytest.mark.parametrize('shape', ['circle', 'square', 'triangle', 'star', 'cross'])
@pytest.mark.parametrize('position,axis,side', [('left', 1, -1), ('right', 1, 1),
                                                ('top', 0, -1), ('bottom', 0, 1)])
def test_positions(shape, position, axis, side):
    mask = _shape_mask(Scene(shape, 'green', 'large', position, 'black'))
    coords = np.nonzero(mask)[axis]
    assert len(coords) > 50
    # The shape's centre of mass is in the named half, and it is not cut off.
    assert side * (coords.mean() - 31.5) > 5
    assert not mask[0].any() or position == 'top'
    assert not mask[:, 0].any() and not mask[:, -1].any() and not mask[-1].any()


def test_center_and_sizes():
    small = _shape_mask(Scene('square', 'yellow', 'small', 'center', 'black'))
    large = _shape_mask(Scene('square', 'yellow', 'large', 'center', 'black'))
    ys, xs = np.nonzero(small)
    assert abs(ys.mean() - 31.5) < 1 and abs(xs.mean() - 31.5) < 1
    assert large.sum() > 2 * small.sum()


@pytest.mark.parametrize('pattern', ['striped', 'dotted'])
@pytest.mark.parametrize('shape', ['circle', 'star'])
def test_pattern_changes_inside_only(pattern, shape):
    plain = Scene(shape, 'purple', 'large', 'center', 'white')
    patterned = Scene(shape, 'purple', 'large', 'center', 'white', pattern)
    inside = _shape_mask(plain)
    diff = np.abs(_pixels(plain) - _pixels(patterned)).sum(-1) > 30
    assert diff[inside].mean() > 0.1  # the pattern is visible
    # And stays in the shape: the Lanczos filter reaches 3 pixels, so the rim
    # near a stripe may change, nothing further out.
    assert not diff[~_dilate(inside, 3)].any()
    # Pattern pixels are the darker shade of the shape colour.
    dark = np.array(pattern_colour('purple'))
    assert (np.abs(_pixels(patterned)[inside] - dark).max(-1) <= 10).any()


def test_stripes_and_dots_differ():
    a = _pixels(Scene('circle', 'red', 'large', 'center', 'white', 'striped'))
    b = _pixels(Scene('circle', 'red', 'large', 'center', 'white', 'dotted'))
    assert (np.abs(a - b).sum(-1) > 30).mean() > 0.05


def test_captions():
    assert (caption(Scene('star', 'red', 'small', 'left', 'blue', 'striped'))
            == 'a small red striped star on the left on a blue background')
    assert (caption(Scene('circle', 'green', 'large', 'center', 'white'))
            == 'a large green circle in the center on a white background')
    assert (caption(Scene('cross', 'yellow', 'small', 'top', 'black', 'dotted'))
            == 'a small yellow dotted cross at the top on a black background')
    assert caption(Scene('square', 'orange', 'large', 'bottom', 'gray')).endswith(
        'square at the bottom on a gray background')


def test_captions_can_leave_words_unsaid():
    scene = Scene('triangle', 'orange', 'small', 'left', 'blue', 'striped')
    assert caption(scene, ['size']) == 'an orange striped triangle on the left on a blue background'
    assert caption(scene, ['position', 'background']) == 'a small orange striped triangle'
    assert caption(scene, CONTEXT_ATTRIBUTES) == 'an orange striped triangle'
    assert (caption(Scene('star', 'red', 'large', 'top', 'white'), ['background'])
            == 'a large red star at the top')
    # Without the object: what the paper's text similarity makes of an edit prompt.
    assert caption(scene, ['object']) == 'a small on the left on a blue background'
    # Colour and pattern may go unsaid, the shape only with the whole object.
    assert caption(scene, ['colour']) == 'a small striped triangle on the left on a blue background'
    assert caption(scene, ['colour', 'pattern', 'size', 'background']) == 'a triangle on the left'
    with pytest.raises(ValueError, match='Cannot omit'):
        caption(scene, ['shape'])


def test_concept_template_keeps_everything_but_the_object():
    scene = Scene('star', 'purple', 'small', 'left', 'blue', 'dotted')
    template = concept_template(scene)
    assert template == 'a small {} on the left on a blue background'
    # Filled with the object's words, it is the scene's caption.
    assert template.replace('{}', 'purple dotted star') == caption(scene)
    plain = Scene('circle', 'green', 'large', 'center', 'white')
    assert concept_template(plain).replace('{}', 'green circle') == caption(plain)


def test_scene_validation_and_frozen():
    with pytest.raises(ValueError, match='colour'):
        Scene('star', 'teal', 'small', 'left', 'blue')
    with pytest.raises(ValueError, match='position'):
        Scene('star', 'red', 'small', 'middle', 'blue')
    scene = Scene('star', 'red', 'small', 'left', 'blue')
    with pytest.raises(AttributeError):
        scene.colour = 'green'
    assert scene == Scene('star', 'red', 'small', 'left', 'blue', 'plain')
    assert len({scene, Scene('star', 'red', 'small', 'left', 'blue')}) == 1
