"""The reconstruction/editability scatter plot (Gal et al. 2022, Fig. 10)."""
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
