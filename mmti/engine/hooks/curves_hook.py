"""Draw the training curves (``curves.png``) at checkpoints and at the end."""
import json
import math
from pathlib import Path

from mmengine.hooks import CheckpointHook

from mmti.evaluation.plot import line_chart
from mmti.registry import HOOKS
from .atomic_checkpoint_hook import AtomicCheckpointHook
from .learning_signal_hook import SIGNAL_FILE
from .periodic_hook import PeriodicHook
from .similarity_curve_hook import read_similarity

CHECKPOINT_HOOKS = (AtomicCheckpointHook, CheckpointHook)

CURVES_FILE = 'curves.png'


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average, debiased (as TensorBoard's smoothing)."""
    out, mean = [], 0.0
    for i, value in enumerate(values, 1):
        mean = weight * mean + (1 - weight) * value
        out.append(mean / (1 - weight ** i))
    return out


def logged_scalars(log_dir: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """``{key: (steps, values)}`` from mmengine's ``vis_data/scalars.json``."""
    path = Path(log_dir) / 'vis_data' / 'scalars.json'
    series: dict[str, tuple[list[int], list[float]]] = {}
    if not path.is_file():
        return series
    for line in path.read_text(encoding='utf-8').splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written
        step = row.get('step')
        for key, value in row.items():
            if key not in ('step', 'iter') and isinstance(value, (int, float)):
                steps, values = series.setdefault(key, ([], []))
                steps.append(step)
                values.append(float(value))
    return series


@HOOKS.register_module()
class CurvesHook(PeriodicHook):
    """Write ``<work_dir>/curves.png``: the training loss against steps, every
    step (raw) and smoothed, below it the learning signal
    (``learning_signal.json``) with the step where it stopped the run, the
    concept's image and text similarity (``similarity.json``, from
    :class:`SimilarityCurveHook`), and any other logged similarity.

    The loss comes from the message hub (every step since the run began,
    resumed runs included); similarities from mmengine's
    ``vis_data/scalars.json``. Rank 0 only; the file is replaced atomically.

    Args:
        interval: Steps between drawings; None: at the checkpoint hook's
            interval (so a checkpoint always has current curves); 0 or less:
            only at the end.
        smoothing: Weight of the moving average (0: none).
    """

    # After the checkpoint hook (VERY_LOW): a step whose checkpoint is refused
    # (rows not finite) leaves the previous curves as they were.
    priority = 'LOWEST'

    def __init__(self, interval: int | None = None, smoothing: float = 0.9):
        super().__init__(0 if interval is None else interval)
        self.follow_checkpoints = interval is None
        self.smoothing = smoothing
        self._failed = False

    def before_train(self, runner) -> None:
        if self.follow_checkpoints:
            self.interval = next((int(hook.interval) for hook in runner.hooks
                                  if isinstance(hook, CHECKPOINT_HOOKS)
                                  and not getattr(hook, 'by_epoch', False)), 0)

    def act(self, runner, model, step: int, final: bool) -> None:
        try:
            path = write_curves(runner, step, self.smoothing)
        except OSError as err:  # a picture is not worth the run: say so once, train on
            if not self._failed:
                runner.logger.warning(
                    f'Cannot write {Path(runner.work_dir) / CURVES_FILE} ({err}); training goes on '
                    f'without the curves. Fix: remove whatever is in the way of that file, or '
                    'set default_hooks.curves=None.')
            self._failed = True
            return
        if final:
            runner.logger.info(f'Saved training curves to {path}')


def read_signal(work_dir: str | Path) -> dict | None:
    """The series :class:`LearningSignalHook` keeps in the work dir, if any."""
    path = Path(work_dir) / SIGNAL_FILE
    try:
        return json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None


def similarity_panels(series: list[dict]) -> list[dict]:
    """Image and text similarity of the learned rows against steps, each with
    its baselines as flat lines (the initializer word's, the held-out images')
    where they were measured."""
    if not series:
        return []
    steps = [point['step'] for point in series]
    panels = []
    for kind, baselines in (('image', ('initializer', 'image_only')), ('text', ('initializer',))):
        lines = [dict(label='learned', x=steps, y=[p[f'{kind}_similarity'] for p in series],
                      color=(31, 119, 180), width=2)]
        for name, color in zip(baselines, ((127, 127, 127), (44, 160, 44))):
            value = series[-1].get(f'{name}_{kind}_similarity')
            if value is not None:
                label = 'held-out images' if name == 'image_only' else 'initializer word'
                lines.append(dict(label=label, x=[steps[0], steps[-1]], y=[value, value],
                                  color=color))
        title, last = f'{kind} similarity (CLIP)', series[-1]
        share = last.get('gap_closed' if kind == 'image' else 'text_ratio')
        if share is not None:
            what = 'of the gap closed' if kind == 'image' else "of the initializer's"
            title += f": {share:.0%} {what} at step {last['step']}"
        panels.append(dict(title=title, lines=lines))
    return panels


def write_curves(runner, step: int, smoothing: float = 0.9) -> Path:
    """Draw ``curves.png`` in the runner's work dir from what it logged so far."""
    panels = []
    loss = runner.message_hub.log_scalars.get('train/loss')
    values = [float(v) for v in loss.data[0]] if loss is not None else []
    values = values[-step:] if step > 0 else values
    steps = list(range(step - len(values) + 1, step + 1))
    lines = []
    if values:
        lines.append(dict(label='loss (each step)', x=steps, y=values, color=(170, 200, 230)))
        if smoothing > 0 and len(values) > 2:
            lines.append(dict(label='smoothed', x=steps, y=smooth(values, smoothing),
                              color=(31, 119, 180), width=2))
    panels.append(dict(title='training loss', lines=lines))
    signal = read_signal(runner.work_dir)
    if signal and signal['steps']:
        stopped = signal.get('stopped')
        title = 'learning signal (loss on a fixed batch)'
        if stopped:
            title += f": stopped at step {stopped['step']}"
        panels.append(dict(title=title, lines=[dict(
            label='learning signal', x=signal['steps'], y=signal['values'],
            color=(214, 39, 40), width=2)]))
    panels.extend(similarity_panels(read_similarity(runner.work_dir)))
    for key, (xs, ys) in sorted(logged_scalars(runner.log_dir).items()):
        if 'similarity' in key and any(math.isfinite(y) for y in ys):
            panels.append(dict(title=key, lines=[dict(label=key, x=xs, y=ys, width=2)]))
    for panel in panels:  # every panel spans the whole run so far, step for step
        panel['xrange'] = (0, step)
    path = Path(runner.work_dir) / CURVES_FILE
    line_chart(panels, path, title=f'{Path(runner.work_dir).name}: step {step}')
    return path
