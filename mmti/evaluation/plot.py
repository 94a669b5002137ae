"""Plots: the reconstruction/editability scatter (Gal et al. 2022, Fig. 10) and line charts."""
import math
import os

from mmti.fileio import atomic_write


def scatter_plot(rows: dict[str, dict], path: str | os.PathLike,
                 title: str | None = None) -> str:
    """Write a PNG: x = text similarity, y = image similarity, one labelled point per row."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError('scatter_plot needs at least one row.')
    fig = Figure(figsize=(5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (name, row) in enumerate(rows.items()):
        x, y = float(row['text_similarity']), float(row['image_similarity'])
        ax.scatter([x], [y], s=60, color=f'C{i % 10}', zorder=3)
        ax.annotate(name, (x, y), textcoords='offset points', xytext=(6, 6), fontsize=9)
    ax.set_xlabel('Text similarity (editability)')
    ax.set_ylabel('Image similarity (reconstruction)')
    ax.grid(True, alpha=0.3)
    ax.margins(0.25)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format='png')
    return str(path)


# ------------------------------------------------------------ line charts (PIL)
# Curves are drawn with PIL alone: matplotlib is not a dependency of
# training, and a chart of a few lines needs only axes, ticks and polylines.
CHART_WIDTH = 720
PANEL_HEIGHT = 260
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 28, 36
COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2, 2.5 or 5 times a power of ten) within [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 12) for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f'{value:.4g}'


def line_chart(panels: list[dict], path: str | os.PathLike, title: str | None = None) -> str:
    """Write a PNG of stacked panels of x/y lines, drawn with PIL.

    Args:
        panels: One dict per panel: ``title`` and ``lines``, a list of dicts
            with ``label``, ``x``, ``y`` (equal-length sequences) and
            optionally ``color`` (RGB) and ``width`` (px).
        path: The PNG to write (atomically).
        title: A line of text above the first panel.

    Returns:
        str: ``path``.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not panels:
        raise ValueError('line_chart needs at least one panel.')
    font = ImageFont.load_default(size=12)
    header = 22 if title else 0
    image = Image.new('RGB', (CHART_WIDTH, header + PANEL_HEIGHT * len(panels)), 'white')
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((MARGIN_LEFT, 4), title, fill='black', font=font)
    for index, panel in enumerate(panels):
        _draw_panel(draw, font, panel, top=header + index * PANEL_HEIGHT)
    with atomic_write(path) as tmp:
        image.save(tmp, format='PNG')
    return str(path)


def _draw_panel(draw, font, panel: dict, top: int) -> None:
    left, right = MARGIN_LEFT, CHART_WIDTH - MARGIN_RIGHT
    upper, lower = top + MARGIN_TOP, top + PANEL_HEIGHT - MARGIN_BOTTOM
    lines = [line for line in panel.get('lines', []) if len(line['x'])]
    draw.text((left, top + 6), panel.get('title', ''), fill='black', font=font)
    draw.rectangle((left, upper, right, lower), outline=(90, 90, 90))
    if not lines:
        draw.text((left + 10, upper + 10), 'no data yet', fill='gray', font=font)
        return
    xs = [float(x) for line in lines for x in line['x']]
    ys = [float(y) for line in lines for y in line['y'] if math.isfinite(float(y))]
    x0, x1 = min(xs), max(xs)
    y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - abs(y0) * 0.1 - 1e-3, y1 + abs(y1) * 0.1 + 1e-3
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (right - left),
                lower - (y - y0) / (y1 - y0) * (lower - upper))

    for tick in nice_ticks(y0, y1):
        _, py = to_px(x0, tick)
        draw.line((left, py, right, py), fill=(230, 230, 230))
        draw.text((left - 6, py), _label(tick), fill='black', font=font, anchor='rm')
    for tick in nice_ticks(x0, x1):
        px, _ = to_px(tick, y0)
        draw.line((px, lower, px, lower + 4), fill=(90, 90, 90))
        draw.text((px, lower + 6), _label(tick), fill='black', font=font, anchor='mt')
    draw.text(((left + right) / 2, lower + 20), panel.get('xlabel', 'step'), fill='black',
              font=font, anchor='mt')
    legend_x = right - 8
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
