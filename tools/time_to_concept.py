"""Time-to-concept: wall time until an embedding closes 80% / 85% of the gap, diffusers vs mmti.

    python tools/time_to_concept.py --diffusers-script /path/to/textual_inversion.py \
        [--mmti-config configs/textual_inversion_toy.py] [--rounds 3] \
        [--out-dir work_dirs/time_to_concept]

Two recipes learn the same concept from the same images:

* diffusers: its ``examples/textual_inversion/textual_inversion.py``, unmodified
  (pass its path; nothing of it is stored here), with the recipe its README
  recommends: learning rate 5e-4 with ``--scale_lr``, batch 1, gradient
  accumulation 4, 3000 steps, constant schedule, seed 0; on the config's model,
  placeholder, initializer and resolution, an embedding snapshot every
  ``--diffusers-save-steps``. It runs through
  ``tools/diffusers_example_runner.py``, which stands in for torchvision (only
  ``transforms.RandomHorizontalFlip``, a PIL flip of our own; torchvision cannot
  be installed beside this CPU torch). It runs as ``python SCRIPT`` (one
  process, what ``accelerate launch`` does on one device). Its dataset lists
  every file of its folder, so it gets a copy of the images without their
  caption files (``OUT_DIR/diffusers_train_images``).
* mmti: ``tools/train.py CONFIG`` as the config ships it, a snapshot every
  ``--mmti-save-steps``, without the similarity curves (the snapshots are
  scored afterwards, as diffusers' are).

``--cfg-options`` changes the config for every part: the concept, images and
model it names are what diffusers trains on and what the scoring uses too.

Each tool trains in its own process; the rounds interleave them (diffusers,
mmti, diffusers, mmti, ...) so drift in the speed of a shared machine hits
both alike. A snapshot's wall time is its file's modification time minus the
moment its process was launched: each tool pays its own start-up.

After each training run (never inside the timed span) its snapshots are
evaluated in step order with ``tools/evaluate.py CONFIG`` (the config's
``evaluation`` block: CLIP, held-out images, prompts): gap closed =
(learned - initializer) / (image only - initializer) on image similarity, text
ratio = learned / initializer on text similarity
(:mod:`mmti.evaluation.concept_scores`). Evaluation stops at the first snapshot
that reaches the highest threshold (``--evaluate-all`` scores them all). The
initializer and image-only rows do not depend on the snapshot (same model,
word, prompts and seed), so they are measured once, with the first snapshot,
and later evaluations render only the learned row (the learned row came out
identical with and without the initializer row beside it, on CPU).

Printed and written to ``OUT_DIR/time_to_concept.json`` (and ``.md``): per
round and the median over rounds, the first wall time (and step) at which each
tool reaches 80% and 85% of the gap, or "not reached" within its last
evaluated snapshot, and the ratio diffusers / mmti (">=" when diffusers did not
reach it: a lower bound). Each run's process seconds and each evaluation's
seconds are kept too, for planning. An OUT_DIR holding an earlier benchmark
is refused, not overwritten.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout
from mmti.evaluation.concept_scores import gap_closed, text_ratio  # noqa: E402
from mmti.fileio import atomic_write  # noqa: E402
from mmti.fileio.embedding_file import read_embedding_file  # noqa: E402
from mmti.utils import UserError, run_cli  # noqa: E402

sys.path.insert(0, str(ROOT / 'tools'))
from diffusers_example_runner import SHIM_NOTE  # noqa: E402

DEFAULT_CONFIG = 'configs/textual_inversion_toy.py'
THRESHOLDS = (0.80, 0.85)
TOOLS = ('diffusers', 'mmti')
SNAPSHOT_NAME = re.compile(r'^learned_embeds-steps-(\d+)\.safetensors$')  # both tools' naming
IMAGE_SUFFIXES = {'.png', '.jpg', '.jpeg', '.webp', '.bmp'}

# The recipe of diffusers' examples/textual_inversion/README.md ("cat toy" example).
DIFFUSERS_RECIPE = ['--train_batch_size', '1', '--gradient_accumulation_steps', '4',
                    '--learning_rate', '5.0e-04', '--scale_lr', '--lr_scheduler', 'constant',
                    '--lr_warmup_steps', '0', '--seed', '0']
DIFFUSERS_RECIPE_STEPS = 3000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='tools/time_to_concept.py', description=__doc__.split('\n')[0],
        epilog="diffusers' script, unmodified, from a diffusers checkout: git -C path/to/diffusers "
               'show HEAD:examples/textual_inversion/textual_inversion.py > /tmp/diffusers_ti.py '
               '(docs/fast_concepts.md, "Time to concept").')
    parser.add_argument('--diffusers-script', required=True, type=Path,
                        help="diffusers' examples/textual_inversion/textual_inversion.py")
    parser.add_argument('--mmti-config', default=DEFAULT_CONFIG,
                        help='mmti training config; its evaluation block scores both tools')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help="overrides of mmti's config (tools/train.py's); the concept, "
                             "images and model they set are diffusers' and the evaluation's too")
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds (median kept)')
    parser.add_argument('--diffusers-steps', type=int, default=DIFFUSERS_RECIPE_STEPS,
                        help='--max_train_steps of diffusers (its recipe: 3000)')
    parser.add_argument('--diffusers-save-steps', type=int, default=100,
                        help='diffusers steps between snapshots')
    parser.add_argument('--mmti-save-steps', type=int, default=25,
                        help='mmti steps between snapshots')
    parser.add_argument('--evaluate-all', action='store_true',
                        help='score every snapshot, not only up to the first that reaches 85%%')
    parser.add_argument('--num-samples', type=int, default=None,
                        help="images per prompt in evaluation (default: the config's)")
    parser.add_argument('--out-dir', type=Path, default=Path('work_dirs/time_to_concept'))
    args = parser.parse_args(argv)
    if not args.diffusers_script.is_file():
        parser.error(f'--diffusers-script {args.diffusers_script} does not exist; pass '
                     'examples/textual_inversion/textual_inversion.py from a diffusers checkout.')
    if not Path(args.mmti_config).is_file():
        parser.error(f'--mmti-config {args.mmti_config} does not exist.')
    for name in ('rounds', 'diffusers_steps', 'diffusers_save_steps', 'mmti_save_steps'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1.')
    if args.num_samples is not None and args.num_samples < 1:
        parser.error('--num-samples must be at least 1.')
    if args.diffusers_save_steps > args.diffusers_steps:
        parser.error(f'--diffusers-save-steps {args.diffusers_save_steps} is more than '
                     f'--diffusers-steps {args.diffusers_steps}: diffusers would write no snapshot '
                     'to score; save at most every --diffusers-steps.')
    if args.out_dir.exists() and not args.out_dir.is_dir():
        parser.error(f'--out-dir {args.out_dir} is a file; pass a folder (new or empty).')
    return args


def parse_cfg_options(options: list[str]) -> dict:
    """``KEY=VALUE`` strings as tools/train.py reads them (mmengine's DictAction)."""
    from mmengine.config import DictAction
    namespace = argparse.Namespace(cfg_options=None)
    if options:
        DictAction(option_strings=['--cfg-options'], dest='cfg_options')(
            None, namespace, options)
    return namespace.cfg_options or {}


# --- what the runs measure ------------------------------------------------

def snapshots(folder: Path) -> list[tuple[int, Path]]:
    """``learned_embeds-steps-N.safetensors`` files of ``folder``, in step order, and
    ``learned_embeds.safetensors`` where mmti's learning signal stopped the run
    (``learning_signal.json`` names the step)."""
    found = [(int(m.group(1)), path) for path in Path(folder).iterdir()
             if (m := SNAPSHOT_NAME.match(path.name))]
    final = Path(folder) / 'learned_embeds.safetensors'
    try:
        stopped = json.loads((Path(folder) / 'learning_signal.json').read_text())['stopped']
    except (OSError, ValueError, KeyError):
        stopped = None
    if stopped and final.is_file() and stopped['step'] not in {step for step, _ in found}:
        found.append((int(stopped['step']), final))
    return sorted(found)


def score_snapshots(found: list[tuple[int, Path]], launched_at: float,
                    evaluate: Callable[[int, Path], dict], stop_at: float | None,
                    on_point: Callable[[dict], None] = lambda point: None) -> list[dict]:
    """Gap closed and text ratio of each snapshot, in step order.

    Args:
        found: ``(step, path)`` pairs from :func:`snapshots`.
        launched_at: When the training process was launched (``time.time()``).
        evaluate: ``evaluate(step, path) -> rows`` as ``evaluate_concept``
            returns them (``learned``, ``initializer``, ``image only``).
        stop_at: Stop after the first snapshot whose gap closed reaches this;
            None scores every snapshot.
        on_point: Called with each point as it is scored (progress).
    """
    points = []
    for step, path in found:
        wall_s = path.stat().st_mtime - launched_at  # read before evaluating: nothing else counts
        started = time.perf_counter()
        rows = evaluate(step, path)
        points.append({'step': step, 'wall_s': wall_s, 'gap_closed': gap_closed(rows),
                       'text_ratio': text_ratio(rows),
                       'evaluate_s': time.perf_counter() - started})  # for planning runs
        on_point(points[-1])
        if stop_at is not None and points[-1]['gap_closed'] >= stop_at:
            break
    return points


def first_reach(points: list[dict], threshold: float) -> dict:
    """The first point at or above ``threshold``; else how far the search went."""
    for point in points:
        if point['gap_closed'] >= threshold:
            return {'reached': True, 'step': point['step'], 'wall_s': point['wall_s']}
    last = points[-1] if points else {'step': 0, 'wall_s': 0.0}
    return {'reached': False, 'step': last['step'], 'wall_s': last['wall_s']}


def median_reach(reaches: list[dict]) -> dict:
    """Median wall time over rounds; a round that did not reach counts as slower than any."""
    ranked = sorted(reaches, key=lambda r: (not r['reached'], r['wall_s'] if r['reached'] else 0))
    middle = ranked[(len(ranked) - 1) // 2:len(ranked) // 2 + 1]
    if not all(r['reached'] for r in middle):
        # A lower bound must hold in every round that missed: the shortest search.
        missed = [r for r in reaches if not r['reached']]
        return {'reached': False, 'wall_s': min(r['wall_s'] for r in missed),
                'step': min(r['step'] for r in missed)}
    return {'reached': True, 'wall_s': statistics.mean(r['wall_s'] for r in middle),
            'step': statistics.mean(r['step'] for r in middle)}


def speedup(diffusers: dict, mmti: dict) -> dict:
    """diffusers' time / mmti's: a lower bound if diffusers missed, none if mmti did."""
    if not mmti['reached']:
        return {'ratio': None, 'bound': 'mmti did not reach'}
    ratio = diffusers['wall_s'] / mmti['wall_s']
    return {'ratio': ratio, 'bound': 'exact' if diffusers['reached'] else 'at least'}


def summarize(runs: list[dict], thresholds=THRESHOLDS) -> dict:
    """Per-round and median times to each threshold, and their ratios."""
    rounds = sorted({run['round'] for run in runs})
    table = {'rounds': [], 'median': {}}
    for number in rounds:
        entry = {'round': number}
        for threshold in thresholds:
            key = f'{threshold:.0%}'
            reach = {run['tool']: first_reach(run['points'], threshold)
                     for run in runs if run['round'] == number}
            if set(reach) == set(TOOLS):
                reach['ratio'] = speedup(reach['diffusers'], reach['mmti'])
            entry[key] = reach
        table['rounds'].append(entry)
    for threshold in thresholds:
        key = f'{threshold:.0%}'
        median = {tool: median_reach([e[key][tool] for e in table['rounds'] if tool in e[key]])
                  for tool in TOOLS if any(tool in e[key] for e in table['rounds'])}
        if set(median) == set(TOOLS):
            median['ratio'] = speedup(median['diffusers'], median['mmti'])
        table['median'][key] = median
    return table


def _cell(reach: dict | None) -> str:
    if reach is None:
        return '-'
    if not reach['reached']:
        return f"not reached in {reach['step']:.0f} steps / {reach['wall_s']:.0f} s"
    return f"{reach['wall_s']:.0f} s (step {reach['step']:.0f})"


def _ratio_cell(ratio: dict | None) -> str:
    if ratio is None or ratio['ratio'] is None:
        return '-'
    return f"{'>= ' if ratio['bound'] == 'at least' else ''}{ratio['ratio']:.1f}x"


def markdown(table: dict, thresholds=THRESHOLDS) -> str:
    keys = [f'{t:.0%}' for t in thresholds]
    header = ['round'] + [f'{tool} {k}' for k in keys for tool in TOOLS] + [
        f'ratio {k}' for k in keys]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    entries = [(str(e['round']), e) for e in table['rounds']] + [('median', table['median'])]
    for name, entry in entries:
        cells = [_cell(entry[k].get(tool)) for k in keys for tool in TOOLS]
        cells += [_ratio_cell(entry[k].get('ratio')) for k in keys]
        lines.append('| ' + ' | '.join([name, *cells]) + ' |')
    return '\n'.join(lines)


# --- running the tools ------------------------------------------------------

def images_only_folder(source: Path, target: Path) -> Path:
    """A copy of ``source``'s images without their caption files (diffusers lists every file)."""
    target.mkdir(parents=True, exist_ok=True)
    images = [p for p in sorted(Path(source).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise UserError(f'{source} holds no images; check the config\'s data_root.')
    for image in images:
        shutil.copy2(image, target / image.name)
    return target


def diffusers_command(script: Path, cfg, images: Path, steps: int, save_steps: int,
                      out: Path) -> list[str]:
    return [sys.executable, str(ROOT / 'tools' / 'diffusers_example_runner.py'), str(script),
            '--pretrained_model_name_or_path', str(cfg.model.pretrained_model),
            '--train_data_dir', str(images),
            '--placeholder_token', cfg.model.placeholder_token,
            '--initializer_token', cfg.model.initializer_token,
            '--learnable_property',
            cfg.train_dataloader.dataset.get('learnable_property', 'object'),
            '--resolution', str(cfg.train_dataloader.dataset.resolution),
            *DIFFUSERS_RECIPE,
            '--max_train_steps', str(steps), '--save_steps', str(save_steps),
            '--output_dir', str(out)]


def mmti_command(config: str, save_steps: int, options: list[str], out: Path) -> list[str]:
    return [sys.executable, str(ROOT / 'tools' / 'train.py'), config, '--work-dir', str(out),
            '--cfg-options', f'default_hooks.embedding_save.interval={save_steps}',
            # Scoring happens afterwards, untimed, for both tools: no renders
            # for the similarity curves inside the timed run.
            'default_hooks.similarity=None', *options]


def launch(command: list[str], log: Path) -> tuple[float, float]:
    """Run ``command`` from the repository root; returns its launch time (``time.time()``)
    and how many seconds it ran."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE='1')
    with open(log, 'w') as output:
        launched_at = time.time()
        status = subprocess.run(command, cwd=ROOT, env=env, stdout=output,
                                stderr=subprocess.STDOUT).returncode
    if status != 0:
        tail = log.read_text(errors='replace')[-3000:]
        raise SystemExit(f'{Path(command[1]).name} failed (exit {status}); log {log}:\n{tail}')
    return launched_at, time.time() - launched_at


def num_vectors(snapshot: Path) -> int:
    """Rows of the (single) concept in an embedding file."""
    rows = list(read_embedding_file(snapshot).embeddings.values())
    if len(rows) != 1:
        raise SystemExit(f'{snapshot} holds {len(rows)} concepts; a snapshot holds one.')
    return int(rows[0].shape[0])


class SnapshotEvaluator:
    """Scores snapshots with tools/evaluate.py; the snapshot-free rows are measured once."""

    def __init__(self, config: str, options: list[str] = (), cfg_options: list[str] = ()):
        self.config = config
        self.options = list(options)  # more options of tools/evaluate.py
        self.cfg_options = list(cfg_options)  # the overrides training had
        self.baseline: dict | None = None  # the 'initializer' and 'image only' rows

    def __call__(self, snapshot: Path, out: Path) -> dict:
        launch(self.command(snapshot, out), out / 'evaluate.log')
        rows = json.loads((out / 'metrics.json').read_text())['rows']
        if self.baseline is None:
            self.baseline = {name: rows[name] for name in ('initializer', 'image only')
                             if name in rows}
        return {**self.baseline, 'learned': rows['learned']}

    def command(self, snapshot: Path, out: Path) -> list[str]:
        """tools/evaluate.py's command line for one snapshot."""
        command = [sys.executable, str(ROOT / 'tools' / 'evaluate.py'), self.config,
                   '--embeddings', str(snapshot), '--out-dir', str(out), *self.options,
                   # The snapshot's rows decide (diffusers' recipe learns one; the config may
                   # train more): the model is built for as many as the file holds.
                   '--cfg-options', *self.cfg_options,
                   f'model.num_vectors={num_vectors(snapshot)}']
        if self.baseline is not None:
            command += ['--initializer', '']  # the learned row only
        return command


def check_evaluation_block(cfg, config: str) -> None:
    """Refuse, before hours of training, a config whose evaluation cannot give a gap."""
    dataset = cfg.train_dataloader.dataset
    if dataset.get('concepts') is not None or 'data_root' not in dataset:
        raise UserError(f'{config} trains many concepts; the benchmark times one concept '
                         'against diffusers\' script, which learns one: pass a single-concept '
                         'config such as configs/textual_inversion_toy.py.')
    evaluation = cfg.get('evaluation') or {}
    missing = [key for key in ('clip', 'held_out_dir') if not evaluation.get(key)]
    if not cfg.model.get('initializer_token'):
        missing.append('model.initializer_token')
    if missing:
        raise UserError(f'{config}: the gap closed needs evaluation.clip, '
                         f'evaluation.held_out_dir and model.initializer_token; missing '
                         f'{missing} (see configs/textual_inversion_toy.py).')
    from mmti.datasets.evaluation_inputs import resolve_held_out_dir
    held_out = resolve_held_out_dir(evaluation['held_out_dir'], dataset.data_root)
    for key, path in (('evaluation.clip', evaluation['clip']),
                      ('evaluation.held_out_dir', held_out),
                      ('train_dataloader.dataset.data_root', dataset.data_root)):
        if not (ROOT / path).is_dir():
            raise UserError(f'{config}: {key} {path} is not a folder; fix it before hours of '
                             'training.')


def benchmark_config(config: str, options: list[str], name: str):
    """The mmti config with ``--cfg-options`` applied, checked for the benchmark.

    The overrides set the concept, images and model for every part (mmti's
    training, diffusers' command, the scoring), not for mmti's training alone.
    """
    from mmti.engine import load_user_config
    cfg = load_user_config(config, parse_cfg_options(options), import_custom_modules=False)
    check_evaluation_block(cfg, name)
    return cfg


def train_and_score(tool: str, command: list[str], run_dir: Path,
                    evaluator: SnapshotEvaluator, stop_at: float | None) -> dict:
    """One timed training run of ``tool``, then its snapshots scored (untimed)."""
    launched_at, process_s = launch(command, run_dir / 'train.log')
    print(f'  {tool} process ran {process_s:.0f} s; evaluating its snapshots ...', flush=True)
    found = snapshots(run_dir / 'train')
    if not found:
        raise SystemExit(f'{tool} wrote no learned_embeds-steps-N.safetensors in '
                         f'{run_dir / "train"}; see {run_dir / "train.log"}.')

    def report(point: dict) -> None:
        print(f"  {tool} step {point['step']}: {point['wall_s']:.1f} s, gap closed "
              f"{point['gap_closed']:.1%}, text ratio {point['text_ratio']:.1%}", flush=True)

    points = score_snapshots(
        found, launched_at, lambda step, path: evaluator(path, run_dir / 'eval' / f'steps-{step}'),
        stop_at, report)
    return {'tool': tool, 'command': command, 'process_s': process_s, 'points': points}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    config = str(Path(args.mmti_config).resolve())  # the tools run from the repository root
    cfg = benchmark_config(config, args.cfg_options, args.mmti_config)
    out = args.out_dir.resolve()
    earlier = sorted(out.glob('round_*'))
    if earlier:
        state = ('' if (out / 'time_to_concept.json').is_file()
                 else '; no time_to_concept.json: it failed or was interrupted before its first '
                      'result, see its train.log files')
        raise UserError(f'{args.out_dir} already holds a benchmark ({earlier[0].name}, ...'
                         f'{state}); pass another --out-dir, or remove that one.')
    images = images_only_folder(ROOT / cfg.train_dataloader.dataset.data_root,
                                out / 'diffusers_train_images')
    evaluator = SnapshotEvaluator(
        config, [] if args.num_samples is None else ['--num-samples', str(args.num_samples)],
        args.cfg_options)
    stop_at = None if args.evaluate_all else max(THRESHOLDS)
    print(f'time_to_concept: {SHIM_NOTE}.', flush=True)
    commands = {
        'diffusers': lambda run_dir: diffusers_command(
            args.diffusers_script.resolve(), cfg, images, args.diffusers_steps,
            args.diffusers_save_steps, run_dir),
        'mmti': lambda run_dir: mmti_command(config, args.mmti_save_steps,
                                             args.cfg_options, run_dir),
    }
    runs = []
    result = {}
    for number in range(1, args.rounds + 1):
        for tool in TOOLS:  # interleaved: machine drift hits both tools alike
            print(f'round {number}/{args.rounds}: training {tool} ...', flush=True)
            run_dir = out / f'round_{number}' / tool
            try:
                run = train_and_score(tool, commands[tool](run_dir / 'train'), run_dir,
                                      evaluator, stop_at)
            except ValueError as error:  # rows that cannot give a gap
                raise SystemExit(f'{args.mmti_config}: {error}') from None
            runs.append({'round': number, **run})
            result = {'summary': summarize(runs), 'runs': runs,
                      'baseline_rows': evaluator.baseline, 'thresholds': list(THRESHOLDS),
                      'note': SHIM_NOTE,
                      'settings': {k: str(v) if isinstance(v, Path) else v
                                   for k, v in vars(args).items()}}
            with atomic_write(out / 'time_to_concept.json') as tmp:  # after every run
                tmp.write_text(json.dumps(result, indent=2) + '\n')
    table = markdown(result['summary'])
    with atomic_write(out / 'time_to_concept.md') as tmp:
        tmp.write_text(table + f'\n\n{SHIM_NOTE}.\n')
    print(table)
    print(f'({SHIM_NOTE}.)\nWrote {out / "time_to_concept.json"} and {out / "time_to_concept.md"}')
    return result


def cli(argv: list[str] | None = None) -> None:
    """Input the user can fix: one line and exit status 2; a failed run: exit 1."""
    run_cli('tools/time_to_concept.py', main, argv)


if __name__ == '__main__':
    cli()
