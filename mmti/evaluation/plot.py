"""Plots drawn with PIL: the reconstruction/editability scatter (Gal et al. 2022,
Fig. 10) and the line charts of training curves.

matplotlib is not a dependency: a chart of a few points or lines needs only
axes, ticks, polylines and text, which PIL (already needed for images) draws.
"""
import math
import os
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFont

from mmti.fileio import atomic_write

CHART_WIDTH = 720
PANEL_HEIGHT = 260
SCATTER_SIZE = (560, 500)
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 28, 36
COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
GRID, FRAME = (230, 230, 230), (90, 90, 90)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round ticks (1, 2, 2.5 or 5 times a power of ten) within [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 12) for i in range(int((high - first) / step + 1e-9) + 1)]


def _font(size: int = 12):
    return ImageFont.load_default(size=size)


def _span(values: list[float], margin: float) -> tuple[float, float]:
    """[min, max] of ``values`` widened by ``margin`` of its width (never empty)."""
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high == low:
        low, high = low - abs(low) * 0.1 - 1e-3, high + abs(high) * 0.1 + 1e-3
    pad = (high - low) * margin
    return low - pad, high + pad


def _axes(image: Image.Image, box: tuple[int, int, int, int], xs: tuple[float, float],
          ys: tuple[float, float], xlabel: str, ylabel: str = '') -> Callable:
    """Frame, grid lines, ticks and labels in ``box``; returns data -> pixel."""
    draw = ImageDraw.Draw(image)
    font = _font()
    left, upper, right, lower = box
    (x0, x1), (y0, y1) = xs, ys

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (right - left),
                lower - (y - y0) / (y1 - y0) * (lower - upper))

    draw.rectangle(box, outline=FRAME)
    for tick in nice_ticks(y0, y1):
        _, py = to_px(x0, tick)
        draw.line((left + 1, py, right - 1, py), fill=GRID)
        draw.text((left - 6, py), f'{tick:.4g}', fill='black', font=font, anchor='rm')
    for tick in nice_ticks(x0, x1):
        px, _ = to_px(tick, y0)
        draw.line((px, lower, px, lower + 4), fill=FRAME)
        draw.text((px, lower + 6), f'{tick:.4g}', fill='black', font=font, anchor='mt')
    draw.text(((left + right) / 2, lower + 20), xlabel, fill='black', font=font, anchor='mt')
    if ylabel:  # written upwards along the left edge
        label = Image.new('L', (int(draw.textlength(ylabel, font=font)) + 4, 16), 0)
        ImageDraw.Draw(label).text((2, 1), ylabel, fill=255, font=font)
        label = label.rotate(90, expand=True)
        image.paste((0, 0, 0), (4, int((upper + lower - label.height) / 2)), label)
    return to_px


def scatter_plot(rows: dict[str, dict], path: str | os.PathLike,
                 title: str | None = None) -> str:
    """Write a PNG: x = text similarity, y = image similarity, one labelled point per row."""
    if not rows:
        raise ValueError('scatter_plot needs at least one row.')
    points = [(name, float(row['text_similarity']), float(row['image_similarity']))
              for name, row in rows.items()]
    image = Image.new('RGB', SCATTER_SIZE, 'white')
    draw = ImageDraw.Draw(image)
    font = _font()
    if title:
        draw.text((SCATTER_SIZE[0] / 2, 8), title, fill='black', font=font, anchor='mt')
    box = (MARGIN_LEFT, MARGIN_TOP + 8, SCATTER_SIZE[0] - MARGIN_RIGHT,
           SCATTER_SIZE[1] - MARGIN_BOTTOM - 8)
    to_px = _axes(image, box, _span([x for _, x, _ in points], 0.25),
                  _span([y for _, _, y in points], 0.25),
                  'Text similarity (editability)', 'Image similarity (reconstruction)')
    for i, (name, x, y) in enumerate(points):
        px, py = to_px(x, y)
        color = COLORS[i % len(COLORS)]
        draw.ellipse((px - 5, py - 5, px + 5, py + 5), fill=color)
        draw.text((px + 7, py - 7), name, fill='black', font=font, anchor='ls')
    with atomic_write(path) as tmp:
        image.save(tmp, format='PNG')
    return str(path)


def line_chart(panels: list[dict], path: str | os.PathLike, title: str | None = None) -> str:
    """Write a PNG of stacked panels of x/y lines.

    Args:
        panels: One dict per panel: ``title``, optional ``xlabel`` (default
            'step'), optional ``xrange`` (x values the axis must span, e.g.
            ``(0, last_step)`` for panels that share it) and ``lines``, a list of
            dicts with ``label``, ``x``, ``y``
            (equal-length sequences) and optionally ``color`` (RGB) and
            ``width`` (px).
        path: The PNG to write (atomically).
        title: A line of text above the first panel.

    Returns:
        str: ``path``.
    """
    if not panels:
        raise ValueError('line_chart needs at least one panel.')
    header = 22 if title else 0
    image = Image.new('RGB', (CHART_WIDTH, header + PANEL_HEIGHT * len(panels)), 'white')
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((MARGIN_LEFT, 4), title, fill='black', font=_font())
    for index, panel in enumerate(panels):
        _draw_panel(image, panel, top=header + index * PANEL_HEIGHT)
    with atomic_write(path) as tmp:
        image.save(tmp, format='PNG')
    return str(path)


def _draw_panel(image: Image.Image, panel: dict, top: int) -> None:
    draw = ImageDraw.Draw(image)
    font = _font()
    box = (MARGIN_LEFT, top + MARGIN_TOP, CHART_WIDTH - MARGIN_RIGHT,
           top + PANEL_HEIGHT - MARGIN_BOTTOM)
    lines = [line for line in panel.get('lines', []) if len(line['x'])]
    draw.text((box[0], top + 6), panel.get('title', ''), fill='black', font=font)
    if not lines:
        draw.rectangle(box, outline=FRAME)
        draw.text((box[0] + 10, box[1] + 10), 'no data yet', fill='gray', font=font)
        return
    xs = [float(x) for line in lines for x in line['x']]
    ys = [float(y) for line in lines for y in line['y'] if math.isfinite(float(y))]
    # A shared range keeps stacked panels aligned step for step.
    to_px = _axes(image, box, _span(xs + list(panel.get('xrange', ())), 0.0), _span(ys, 0.05),
                  panel.get('xlabel', 'step'))
    legend_x = box[2] - 8
    for i, line in enumerate(lines):
        color = tuple(line.get('color') or COLORS[i % len(COLORS)])
        points = [to_px(float(x), float(y)) for x, y in zip(line['x'], line['y'])
                  if math.isfinite(float(y))]
        if len(points) == 1:
            px, py = points[0]
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=color)
        elif points:
            draw.line(points, fill=color, width=int(line.get('width', 1)), joint='curve')
        label = line.get('label', '')
        if label:
            draw.text((legend_x, top + 6), label, fill=color, font=font, anchor='ra')
            legend_x -= draw.textlength(label, font=font) + 14
