"""Paint the demo "cat toy" pictures: one toy cat in five shots.

The Textual Inversion demo learns a concept from a handful of photos of one
object. These stand in for such photos: a toy cat drawn procedurally and
composited at different places, sizes, tilts and backgrounds. The result is a
pure function of the code, so repainting gives byte-identical PNGs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

Color = tuple[int, int, int]

ORANGE: Color = (238, 134, 44)
DARK_ORANGE: Color = (196, 92, 24)
CREAM: Color = (255, 226, 180)
TEAL: Color = (22, 160, 152)
DARK_TEAL: Color = (12, 104, 100)
PINK: Color = (240, 128, 150)
YELLOW: Color = (250, 206, 60)
INK: Color = (54, 34, 24)
WHITE: Color = (255, 255, 255)

# The sprite is drawn large on a 100 x 130 unit grid and scaled down later,
# which gives smooth, anti-aliased edges without any extra machinery.
SPRITE_UNITS = (100, 130)
SPRITE_PX_PER_UNIT = 6


@dataclass(frozen=True)
class CatToyShot:
    """How one demo image shows the toy.

    Attributes:
        size: Image (width, height) in pixels.
        background: A background kind of :func:`make_background`.
        colors: The background's two colours.
        center: Sprite centre as fractions of width and height.
        height: Sprite height as a fraction of the image height.
        angle: Counter-clockwise tilt in degrees.
        mirror: Whether the toy faces the other way.
    """

    size: tuple[int, int]
    background: str
    colors: tuple[Color, Color]
    center: tuple[float, float]
    height: float
    angle: float = 0.0
    mirror: bool = False


SHOTS = (
    CatToyShot((96, 96), "plain", ((244, 238, 222), (244, 238, 222)), (0.5, 0.52), 0.86),
    CatToyShot((128, 96), "vertical", ((150, 200, 240), (250, 250, 255)), (0.36, 0.55), 0.78, angle=-8),
    CatToyShot((80, 112), "horizontal", ((206, 190, 238), (255, 214, 190)), (0.5, 0.62), 0.6, angle=6),
    CatToyShot((120, 120), "radial", ((214, 240, 200), (110, 160, 110)), (0.64, 0.42), 0.46),
    CatToyShot((112, 84), "floor", ((226, 226, 232), (176, 140, 110)), (0.66, 0.52), 0.9, angle=4, mirror=True),
)


def _box(cx: float, cy: float, rx: float, ry: float) -> tuple[float, float, float, float]:
    """Bounding box of an ellipse given its centre and radii (sprite units)."""
    s = SPRITE_PX_PER_UNIT
    return ((cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s)


def _pts(*points: tuple[float, float]) -> list[tuple[float, float]]:
    """Convert sprite-unit points to pixels."""
    s = SPRITE_PX_PER_UNIT
    return [(x * s, y * s) for x, y in points]


def _draw_body(draw: ImageDraw.ImageDraw, line: int) -> None:
    """Draw the pedestal, tail, body, belly and collar of the toy."""
    s = SPRITE_PX_PER_UNIT
    # A teal stand makes it read as a toy rather than a real cat.
    draw.rounded_rectangle(_box(50, 118, 34, 8), radius=5 * s, fill=TEAL, outline=INK, width=line)
    # Tail: a thick arc drawn twice, dark then light, for an outline.
    draw.arc(_box(80, 88, 14, 22), start=200, end=340, fill=INK, width=8 * s)
    draw.arc(_box(80, 88, 14, 22), start=203, end=337, fill=ORANGE, width=5 * s)
    draw.ellipse(_box(50, 90, 27, 24), fill=ORANGE, outline=INK, width=line)
    draw.ellipse(_box(50, 96, 14, 15), fill=CREAM)
    for dx in (-18, 18):  # front paws
        draw.ellipse(_box(50 + dx, 110, 8, 5), fill=CREAM, outline=INK, width=line)
    draw.rounded_rectangle(_box(50, 66, 22, 4), radius=3 * s, fill=TEAL, outline=INK, width=line)
    draw.ellipse(_box(50, 72, 4.5, 4.5), fill=YELLOW, outline=INK, width=line)


def _draw_head(draw: ImageDraw.ImageDraw, line: int) -> None:
    """Draw the head: ears, stripes, eyes, nose, mouth and whiskers."""
    s = SPRITE_PX_PER_UNIT
    for side in (-1, 1):
        outer = _pts((50 + side * 30, 28), (50 + side * 34, 2), (50 + side * 12, 18))
        inner = _pts((50 + side * 28, 24), (50 + side * 31, 8), (50 + side * 17, 18))
        draw.polygon(outer, fill=ORANGE, outline=INK, width=line)
        draw.polygon(inner, fill=TEAL)
    draw.ellipse(_box(50, 40, 33, 27), fill=ORANGE, outline=INK, width=line)
    for dx in (-7, 0, 7):  # forehead stripes
        draw.line(_pts((50 + dx, 15), (50 + dx * 1.2, 24)), fill=DARK_ORANGE, width=3 * s)
    draw.ellipse(_box(50, 52, 15, 10), fill=CREAM)
    for side in (-1, 1):
        ex = 50 + side * 13
        draw.ellipse(_box(ex, 38, 7, 8), fill=WHITE, outline=INK, width=line)
        draw.ellipse(_box(ex + side * 1.5, 39, 3.5, 5), fill=DARK_TEAL)
        draw.ellipse(_box(ex + side * 0.5, 36.5, 1.3, 1.3), fill=WHITE)
        for dy in (-3, 1, 5):  # whiskers fan out from the muzzle
            draw.line(_pts((50 + side * 12, 51 + dy * 0.5), (50 + side * 38, 49 + dy * 1.6)), fill=INK, width=line)
    draw.polygon(_pts((46, 47), (54, 47), (50, 52)), fill=PINK, outline=INK, width=line)
    draw.arc(_box(46, 52, 4, 4), start=20, end=160, fill=INK, width=line)
    draw.arc(_box(54, 52, 4, 4), start=20, end=160, fill=INK, width=line)


def draw_cat_toy_sprite() -> Image.Image:
    """Draw the toy cat on a transparent, high-resolution canvas.

    Returns:
        An RGBA image, taller than wide, with the toy filling most of it.
    """
    w, h = (u * SPRITE_PX_PER_UNIT for u in SPRITE_UNITS)
    sprite = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(sprite)
    line = max(1, round(1.2 * SPRITE_PX_PER_UNIT))
    _draw_body(draw, line)
    _draw_head(draw, line)
    return sprite


def _mix(colors: tuple[Color, Color], t: np.ndarray) -> Image.Image:
    """Blend two colours with weights ``t`` (0 -> first, 1 -> second)."""
    a, b = (np.asarray(c, dtype=np.float64) for c in colors)
    rgb = a + (b - a) * t[..., None]
    return Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")


def make_background(kind: str, size: tuple[int, int], colors: tuple[Color, Color]) -> Image.Image:
    """Render a plain or gradient background.

    Args:
        kind: One of ``plain``, ``vertical``, ``horizontal``, ``radial`` or
            ``floor`` (wall colour above, table colour below).
        size: (width, height) in pixels.
        colors: The two colours to blend.

    Returns:
        An RGB image.
    """
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    y /= max(h - 1, 1)
    x /= max(w - 1, 1)
    if kind == "plain":
        t = np.zeros_like(x)
    elif kind == "vertical":
        t = y
    elif kind == "horizontal":
        t = x
    elif kind == "radial":
        t = np.clip(np.hypot(x - 0.5, y - 0.5) / math.sqrt(0.5), 0.0, 1.0)
    elif kind == "floor":
        # A soft edge instead of a hard step, and a darker wall near the top.
        t = 1.0 / (1.0 + np.exp(-(y - 0.7) * 60.0))
        t = np.maximum(t, 0.15 * (1.0 - y))
    else:
        raise ValueError(f"unknown background {kind!r}")
    return _mix(colors, t)


def render_shot(sprite: Image.Image, shot: CatToyShot) -> Image.Image:
    """Composite the toy onto a background as described by ``shot``.

    Args:
        sprite: The RGBA sprite from :func:`draw_cat_toy_sprite`.
        shot: Placement, size and background.

    Returns:
        The RGB image.
    """
    toy = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if shot.mirror else sprite
    if shot.angle:
        toy = toy.rotate(shot.angle, resample=Image.Resampling.BICUBIC, expand=True)
    w, h = shot.size
    th = max(1, round(h * shot.height))
    tw = max(1, round(toy.width * th / toy.height))
    toy = toy.resize((tw, th), Image.Resampling.LANCZOS)
    canvas = make_background(shot.background, shot.size, shot.colors).convert("RGBA")
    left = round(shot.center[0] * w - tw / 2)
    top = round(shot.center[1] * h - th / 2)
    layer = Image.new("RGBA", shot.size, (0, 0, 0, 0))
    layer.paste(toy, (left, top))
    return Image.alpha_composite(canvas, layer).convert("RGB")


def make_cat_toy_images(out_dir: Path) -> list[Path]:
    """Write the demo concept images ``0.png`` ... ``4.png``.

    Args:
        out_dir: Empty folder to fill; it holds nothing but the images, so
            datasets can take every file in it as a training picture.

    Returns:
        The written paths.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    sprite = draw_cat_toy_sprite()
    paths = []
    for i, shot in enumerate(SHOTS):
        path = out_dir / f"{i}.png"
        # optimize=False: the plain zlib encoder's output depends only on the
        # pixels, which keeps reruns byte-identical.
        render_shot(sprite, shot).save(path, format="PNG", optimize=False)
        paths.append(path)
    return paths
