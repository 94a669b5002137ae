"""One scene of the toy world: its attributes, its picture and its caption."""
import math
from collections.abc import Collection
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw

from .vocabulary import BACKGROUNDS, COLOURS, PATTERNS, POSITION_PHRASES, SHAPES, SIZES

# Shape centre, as fractions of the image side: far enough in that a large
# shape stays whole, far enough out that positions do not overlap much.
_CENTRES = {'left': (0.3, 0.5), 'right': (0.7, 0.5), 'top': (0.5, 0.3),
            'bottom': (0.5, 0.7), 'center': (0.5, 0.5)}
# Half the shape's extent, as a fraction of the image side.
_RADII = {'small': 0.16, 'large': 0.27}
# Pattern period relative to the shape's radius, so a pattern looks the same
# at both sizes (a fixed period would leave a small shape one stripe).
_PERIOD = 0.55


@dataclass(frozen=True)
class Scene:
    """One shape on a flat background.

    Args:
        shape: One of ``SHAPES``.
        colour: Shape colour, a key of ``COLOURS``.
        size: One of ``SIZES``.
        position: One of ``POSITIONS``.
        background: A key of ``BACKGROUNDS``.
        pattern: One of ``PATTERNS``; drawn inside the shape only.
    """

    shape: str
    colour: str
    size: str
    position: str
    background: str
    pattern: str = 'plain'

    def __post_init__(self):
        for name, allowed in (('shape', SHAPES), ('colour', COLOURS), ('size', SIZES),
                              ('position', POSITION_PHRASES), ('background', BACKGROUNDS),
                              ('pattern', PATTERNS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f'Unknown {name} {value!r}; choose from {list(allowed)}.')


# What a caption may leave unsaid: the setting, or the object's looks (its
# shape is said whenever the object is).
CONTEXT_ATTRIBUTES = ('size', 'position', 'background')
LOOK_ATTRIBUTES = ('colour', 'pattern')


def caption(scene: Scene, omit: Collection[str] = ()) -> str:
    """E.g. "a small red striped star on the left on a blue background".

    ``omit`` leaves words unsaid, as real captions do: any of
    ``CONTEXT_ATTRIBUTES`` ("a red striped star on the left"), ``'colour'``
    or ``'pattern'`` ("a small star ...": a star of any look); or
    ``'object'``: the caption with its colour, pattern and shape words taken
    out ("a small on the left on a blue background"), which is how the
    paper's text similarity states an edit prompt without its concept.
    """
    allowed = [*CONTEXT_ATTRIBUTES, *LOOK_ATTRIBUTES, 'object']
    unknown = set(omit) - set(allowed)
    if unknown:
        raise ValueError(f'Cannot omit {sorted(unknown)}; only {allowed}.')
    colour = [] if 'colour' in omit else [scene.colour]
    pattern = [] if scene.pattern == 'plain' or 'pattern' in omit else [scene.pattern]
    noun_phrase = [] if 'object' in omit else [*colour, *pattern, scene.shape]
    size = [] if 'size' in omit else [scene.size]
    words = [*size, *noun_phrase]
    article = 'an' if words and words[0][0] in 'aeiou' else 'a'
    if 'position' not in omit:
        words.append(POSITION_PHRASES[scene.position])
    if 'background' not in omit:
        words.append(f'on a {scene.background} background')
    return ' '.join([article, *words])


def concept_template(scene: Scene) -> str:
    """The caption with the object itself (colour, pattern, shape) as ``{}``.

    E.g. "a small {} on the left on a blue background": what Textual
    Inversion's caption file says about a concept image, leaving the object
    for the placeholder to learn.
    """
    return (f'a {scene.size} {{}} {POSITION_PHRASES[scene.position]} '
            f'on a {scene.background} background')


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        # Start at the top point; inner radius 0.5 is clearly a star yet leaves
        # room for a pattern. Points reach past r: a star's area is small.
        angle = -math.pi / 2 + k * math.pi / 5
        radius = 1.1 * r if k % 2 == 0 else 0.55 * r
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _shape_mask(shape: str, side: int, cx: float, cy: float, r: float) -> Image.Image:
    mask = Image.new('L', (side, side), 0)
    draw = ImageDraw.Draw(mask)
    if shape == 'circle':
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif shape == 'square':
        # Scaled so its area is close to the circle's; equal-extent squares look bigger.
        h = 0.88 * r
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=255)
    elif shape == 'triangle':
        draw.polygon([(cx, cy - r), (cx + 0.95 * r, cy + 0.8 * r), (cx - 0.95 * r, cy + 0.8 * r)],
                     fill=255)
    elif shape == 'star':
        draw.polygon(_star(cx, cy, r), fill=255)
    elif shape == 'cross':
        w = 0.36 * r
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=255)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=255)
    return mask


def _pattern_mask(pattern: str, side: int, cx: float, cy: float, r: float) -> Image.Image:
    mask = Image.new('L', (side, side), 0)
    draw = ImageDraw.Draw(mask)
    period = _PERIOD * r
    # Anchored at the shape's centre so a scene's pattern does not depend on where it is.
    steps = int(side / period) + 2
    if pattern == 'striped':
        for k in range(-steps, steps + 1):
            top = cy + (k - 0.25) * period
            draw.rectangle((0, top, side, top + period / 2), fill=255)
    elif pattern == 'dotted':
        dot = 0.3 * period
        for i in range(-steps, steps + 1):
            for j in range(-steps, steps + 1):
                x, y = cx + i * period, cy + j * period
                if abs(x - cx) <= r + dot and abs(y - cy) <= r + dot:
                    draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=255)
    return mask


def pattern_colour(colour: str) -> tuple[int, int, int]:
    """The shape colour darkened: a pattern stays in the shape's hue."""
    return tuple(int(c * 0.4) for c in COLOURS[colour])


def render_scene(scene: Scene, size: int = 64, supersample: int = 4) -> Image.Image:
    """Draw ``scene`` as a ``size`` x ``size`` RGB image.

    Drawn at ``supersample`` times the size and shrunk with a Lanczos filter,
    so edges are anti-aliased (PIL draws hard edges) and the image is still
    a pure function of the scene.
    """
    if size < 1 or supersample < 1:
        raise ValueError(f'size and supersample must be >= 1, got {size}, {supersample}.')
    side = size * supersample
    fx, fy = _CENTRES[scene.position]
    cx, cy, r = fx * side, fy * side, _RADII[scene.size] * side
    canvas = Image.new('RGB', (side, side), BACKGROUNDS[scene.background])
    shape = _shape_mask(scene.shape, side, cx, cy, r)
    canvas.paste(COLOURS[scene.colour], mask=shape)
    if scene.pattern != 'plain':
        # Clip the pattern to the shape: it decorates the shape, not the background.
        inside = ImageChops.multiply(_pattern_mask(scene.pattern, side, cx, cy, r), shape)
        canvas.paste(pattern_colour(scene.colour), mask=inside)
    if supersample == 1:
        return canvas
    return canvas.resize((size, size), Image.Resampling.LANCZOS)
