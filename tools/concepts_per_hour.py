"""Concepts per hour: toy concepts in one many-concept run vs one run per concept.

    python tools/concepts_per_hour.py [--rounds 2] [--lanes 6 3] [--num-concepts 6] \
        [--out-dir work_dirs/concepts_per_hour]

The concepts are the three held-out toy-world concepts of ``data/toy_concepts``
(image draw seed 0), then the same three from other draws
(``tools/dev/make_toy_concepts.py --seed 7``, then 11 and 13, written into
``OUT_DIR/toy_concepts_seed<seed>``, tokens such as ``<purple-dotted-star-7>``;
same initializers star / triangle / cross): six by default, up to twelve.
Two ways to train them:

* sequential: ``tools/train.py configs/textual_inversion_toy.py`` once per
  concept, one process after the other (a user's shell loop), with
  ``--cfg-options`` for the token, initializer and images; each stops on its
  own learning signal.
* packed: one ``tools/train.py`` run of a config this tool writes
  (``OUT_DIR/packed_<lanes>.py``: ``configs/textual_inversion_toy_concepts.py``
  with the concepts and ``concepts_per_batch=<lanes>``); each concept stops
  on its own learning signal and frees its lane for the next.

Wall time = launch of the first process to the modification time of the last
embedding file written (``*.safetensors`` anywhere in the run folders), model
loading and every process's start-up included, as a user waits for it.
Concepts per hour = concepts / wall time. The rounds interleave the approaches
(sequential, packed, sequential, packed, ...) so that drift in a shared
machine's speed hits both; the median over rounds is reported with each round.
Before each timed run the 1-minute load average is read; above ``--max-load``
the tool waits (polling every 20 s, at most ``--load-wait`` s) and records what
it saw. Timed runs keep tools/train.py's default thread count.

Quality, after all timed runs (never inside them): each concept's embedding of
each approach is scored with ``tools/evaluate.py configs/textual_inversion_toy.py``
(the single-concept toy protocol: evaluation CLIP, held-out captions, edit
prompts) on that concept's own held-out images: gap closed and text ratio
(:mod:`mmti.evaluation.concept_scores`). Identical embedding files (training
is seeded; CPU runs repeat bit for bit) are scored once, and a concept's
initializer and image-only rows, which do not depend on the embedding, are
measured once per concept (tools/time_to_concept.py's ``SnapshotEvaluator``).

Written to ``OUT_DIR/concepts_per_hour.json`` (after every run) and ``.md``.
A benchmark stopped before its last run can still be scored from that json:
``--out-dir OUT_DIR --score-saved`` (trains nothing).
"""
import argparse
import hashlib
import json
import math
import pprint
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout
from mmti.datasets.concept_specs import concept_folder_name  # noqa: E402
from mmti.evaluation.concept_scores import gap_closed, text_ratio  # noqa: E402
from mmti.fileio import atomic_write  # noqa: E402

sys.path.insert(0, str(ROOT / 'tools'))
from time_to_concept import SnapshotEvaluator, launch  # noqa: E402

SINGLE_CONFIG = 'configs/textual_inversion_toy.py'
PACKED_BASE_CONFIG = 'configs/textual_inversion_toy_concepts.py'
TOY_CONCEPTS = (('purple-dotted-star', 'star'), ('orange-striped-triangle', 'triangle'),
                ('green-dotted-cross', 'cross'))
EXTRA_DRAW_SEEDS = (7, 11, 13)  # after data/toy_concepts' seed 0, three concepts each
LOAD_POLL_S = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='tools/concepts_per_hour.py',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=2, help='interleaved rounds (median kept)')
    parser.add_argument('--lanes', type=int, nargs='+', default=[6, 3],
                        help='concepts_per_batch of the packed run; one packed run per value '
                             'in each round')
    parser.add_argument('--num-concepts', type=int, default=6,
                        help='first N concepts: 3 per draw, draws seed 0, 7, 11, 13 (at most '
                             '12; under 6: quick checks only)')
    parser.add_argument('--max-steps', type=int, default=None,
                        help="each concept's step limit (default: the configs' 600)")
    parser.add_argument('--num-samples', type=int, default=None,
                        help="evaluation images per prompt (default: the config's 8)")
    parser.add_argument('--max-load', type=float, default=1.0,
                        help='wait before a timed run while the 1-minute load is above this')
    parser.add_argument('--load-wait', type=float, default=180.0,
                        help='longest wait for the load to fall, in seconds')
    parser.add_argument('--out-dir', type=Path, default=Path('work_dirs/concepts_per_hour'))
    parser.add_argument('--score-saved', action='store_true',
                        help='train nothing: score the runs already saved in '
                             'OUT_DIR/concepts_per_hour.json (a benchmark stopped early)')
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error('--rounds must be at least 1.')
    most = len(TOY_CONCEPTS) * (1 + len(EXTRA_DRAW_SEEDS))
    if not 1 <= args.num_concepts <= most:
        parser.error(f'--num-concepts must be 1 to {most}.')
    if any(lanes < 1 for lanes in args.lanes):
        parser.error('--lanes values must be at least 1.')
    for name in ('max_steps', 'num_samples'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1.')
    return args


# --- the concepts and the packed config --------------------------------------

def toy_draws(out: Path, num_concepts: int) -> list[tuple[Path, str]]:
    """(folder, token suffix) of each image draw the first ``num_concepts`` use:
    seed 0 is data/toy_concepts; the others are written under ``out``."""
    draws = [(ROOT / 'data' / 'toy_concepts', '')]
    draws += [(out / f'toy_concepts_seed{seed}', f'-{seed}') for seed in EXTRA_DRAW_SEEDS]
    return draws[:math.ceil(num_concepts / len(TOY_CONCEPTS))]


def toy_concepts(out: Path, num_concepts: int = 6) -> list[dict]:
    """The first ``num_concepts``: seed 0's three, then each further draw's."""
    concepts = []
    for root, suffix in toy_draws(out, num_concepts):
        for name, initializer in TOY_CONCEPTS:
            concepts.append(dict(placeholder_token=f'<{name}{suffix}>',
                                 initializer_token=initializer, num_vectors=2,
                                 data_root=str(root / name / 'train'),
                                 held_out_dir=str(root / name / 'held_out'),
                                 caption_files=True))  # as the toy recipe (and concept.json)
    return concepts[:num_concepts]


def make_draws(out: Path, num_concepts: int) -> None:
    """Write the further draws the concepts need (kept if an earlier call made them)."""
    for root, suffix in toy_draws(out, num_concepts)[1:]:
        if not root.is_dir():
            subprocess.run([sys.executable, str(ROOT / 'tools' / 'dev' / 'make_toy_concepts.py'),
                            '--seed', suffix.lstrip('-'), '--out', str(root)],
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def packed_config_text(concepts: list[dict], lanes: int, max_steps: int | None) -> str:
    """A config that inherits the toy many-concept config with ``concepts`` replaced."""
    lines = [
        '# Written by tools/concepts_per_hour.py: the toy many-concept recipe on these concepts.',
        f'_base_ = [{str(ROOT / PACKED_BASE_CONFIG)!r}]',
        '',
        f'concepts = {pprint.pformat(concepts, indent=4, sort_dicts=False)}',
        '',
        'model = dict(concepts=concepts)',
        'train_dataloader = dict(',
        f'    batch_sampler=dict(concepts_per_batch={lanes}),',
        '    dataset=dict(concepts=concepts))',
    ]
    if max_steps is not None:
        lines.append(f'default_hooks = dict(concept_queue=dict(max_steps={max_steps}))')
    # Room for every concept's full step limit: a concept waits for a lane, then runs
    # at most max_steps of its own.
    limit = 600 if max_steps is None else max_steps
    lines.append(f'train_cfg = dict(max_iters={limit * math.ceil(len(concepts) / lanes)})')
    return '\n'.join(lines) + '\n'


def write_packed_config(path: Path, concepts: list[dict], lanes: int,
                        max_steps: int | None) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(packed_config_text(concepts, lanes, max_steps))
    return path


def single_options(concept: dict, max_steps: int | None = None) -> list[str]:
    """``--cfg-options`` values that turn the single-concept toy config to ``concept``."""
    options = [f"model.placeholder_token={concept['placeholder_token']}",
               f"model.initializer_token={concept['initializer_token']}",
               f"train_dataloader.dataset.data_root={concept['data_root']}",
               f"evaluation.held_out_dir={concept['held_out_dir']}"]
    if max_steps is not None:
        options.append(f'train_cfg.max_iters={max_steps}')
    return options


def train_command(config: str, work_dir: Path, options: list[str] = ()) -> list[str]:
    command = [sys.executable, str(ROOT / 'tools' / 'train.py'), config,
               '--work-dir', str(work_dir)]
    return command + (['--cfg-options', *options] if options else [])


# --- time arithmetic -----------------------------------------------------------

def last_embedding_time(folders: list[Path]) -> float:
    """Modification time of the newest ``*.safetensors`` under ``folders``."""
    files = [path for folder in folders for path in Path(folder).rglob('*.safetensors')]
    if not files:
        raise SystemExit(f'no embedding file was written under {[str(f) for f in folders]}.')
    return max(path.stat().st_mtime for path in files)


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished children so far: the
    work a run did, a second view beside wall time (not load-proof either: threads
    that spin-wait on an oversubscribed machine count too)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def concepts_per_hour(num_concepts: int, wall_s: float) -> float:
    return num_concepts * 3600.0 / wall_s


def summarize(runs: list[dict], num_concepts: int) -> dict:
    """Median wall time and concepts per hour of each approach, and each packed
    approach's speed-up over sequential (per round and of the medians)."""
    approaches = list(dict.fromkeys(run['approach'] for run in runs))
    median = {}
    for approach in approaches:
        walls = [run['wall_s'] for run in runs if run['approach'] == approach]
        wall = statistics.median(walls)
        median[approach] = {'wall_s': wall, 'rounds': len(walls),
                            'concepts_per_hour': concepts_per_hour(num_concepts, wall)}
        cpu = [run['cpu_s'] for run in runs if run['approach'] == approach and 'cpu_s' in run]
        if len(cpu) == len(walls):  # runs of an older version of this tool have none
            median[approach]['cpu_s'] = statistics.median(cpu)
    rounds = []
    for number in sorted({run['round'] for run in runs}):
        walls = {run['approach']: run['wall_s'] for run in runs if run['round'] == number}
        rounds.append({'round': number, 'wall_s': walls,
                       'speedup': {a: walls['sequential'] / w for a, w in walls.items()
                                   if a != 'sequential' and 'sequential' in walls}})
    speedup = {a: median['sequential']['wall_s'] / m['wall_s'] for a, m in median.items()
               if a != 'sequential' and 'sequential' in median}
    return {'median': median, 'rounds': rounds, 'speedup': speedup}


# --- the load of a shared machine ----------------------------------------------

def one_minute_load() -> float:
    return float(Path('/proc/loadavg').read_text().split()[0])


def wait_for_quiet(max_load: float, longest_s: float, read=one_minute_load,
                   sleep=time.sleep, poll_s: float = LOAD_POLL_S) -> dict:
    """Wait while the load is above ``max_load`` (at most ``longest_s``); what was seen."""
    seen = [read()]
    waited = 0.0
    while seen[-1] > max_load and waited + poll_s <= longest_s:
        sleep(poll_s)
        waited += poll_s
        seen.append(read())
    return {'loads': seen, 'waited_s': waited, 'quiet': seen[-1] <= max_load}


# --- quality -------------------------------------------------------------------

def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def quality_rows(scores: dict[str, dict[str, dict]], approaches: list[str],
                 tokens: list[str]) -> list[dict]:
    """One row per concept (and mean, worst): gap closed and text ratio per approach.

    ``scores[approach][token]`` holds ``gap_closed`` and ``text_ratio``.
    """
    rows = [{'concept': token, **{approach: scores[approach][token] for approach in approaches}}
            for token in tokens]
    for name, pick in (('mean', statistics.mean), ('worst', min)):
        rows.append({'concept': name, **{
            approach: {key: pick(scores[approach][t][key] for t in tokens)
                       for key in ('gap_closed', 'text_ratio')} for approach in approaches}})
    return rows


def timing_markdown(summary: dict, runs: list[dict]) -> str:
    approaches = list(summary['median'])
    header = ['round', *[f'{a} (s)' for a in approaches],
              *[f'{a} speed-up' for a in summary['speedup']], 'load before each run']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for entry in summary['rounds']:
        loads = [f"{run['approach']} {run['load']['loads'][-1]:.2f}"
                 + (f" (waited {run['load']['waited_s']:.0f} s)" if run['load']['waited_s'] else '')
                 for run in runs if run['round'] == entry['round']]
        cells = [f"{entry['wall_s'][a]:.0f}" if a in entry['wall_s'] else '-' for a in approaches]
        cells += [f"{entry['speedup'][a]:.2f}x" if a in entry['speedup'] else '-'
                  for a in summary['speedup']]
        lines.append('| ' + ' | '.join([str(entry['round']), *cells, ', '.join(loads)]) + ' |')
    cells = [f"{summary['median'][a]['wall_s']:.0f}" for a in approaches]
    cells += [f'{summary["speedup"][a]:.2f}x' for a in summary['speedup']]
    lines.append('| ' + ' | '.join(['median', *cells, '']) + ' |')
    lines.append('| concepts / hour | ' + ' | '.join(
        f"{summary['median'][a]['concepts_per_hour']:.0f}" for a in approaches)
        + ' |' + ' |' * (len(summary['speedup']) + 1))
    if all('cpu_s' in summary['median'][a] for a in approaches):
        sequential = summary['median'].get('sequential', {}).get('cpu_s')
        lines.append('| CPU seconds | ' + ' | '.join(
            f"{summary['median'][a]['cpu_s']:.0f}" for a in approaches) + ' | ' + ' | '.join(
            f"{sequential / summary['median'][a]['cpu_s']:.2f}x" if sequential else '-'
            for a in summary['speedup']) + ' | |')
    return '\n'.join(lines)


def quality_markdown(rows: list[dict], approaches: list[str]) -> str:
    header = ['concept', *[f'{a} gap closed' for a in approaches],
              *[f'{a} text ratio' for a in approaches]]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for row in rows:
        cells = [f"{row[a]['gap_closed']:.1%}" for a in approaches]
        cells += [f"{row[a]['text_ratio']:.1%}" for a in approaches]
        lines.append('| ' + ' | '.join([f"`{row['concept']}`" if row['concept'].startswith('<')
                                        else row['concept'], *cells]) + ' |')
    return '\n'.join(lines)


# --- running ---------------------------------------------------------------------

def run_sequential(concepts: list[dict], run_dir: Path, max_steps: int | None) -> dict:
    """One tools/train.py process per concept, back to back; timed launch to last file."""
    launched_at = None
    processes, embeddings = [], {}
    cpu_before = children_cpu_s()
    for concept in concepts:
        name = concept_folder_name(concept['placeholder_token'])
        work_dir = run_dir / name
        started, process_s = launch(
            # Scored afterwards, untimed, as the packed run's concepts are:
            # no similarity curves inside the timed run.
            train_command(SINGLE_CONFIG, work_dir, [*single_options(concept, max_steps),
                                                    'default_hooks.similarity=None']),
            run_dir / f'{name}.log')
        launched_at = started if launched_at is None else launched_at
        processes.append(process_s)
        embeddings[concept['placeholder_token']] = str(work_dir / 'learned_embeds.safetensors')
    wall_s = last_embedding_time([run_dir]) - launched_at
    return {'wall_s': wall_s, 'process_s': processes, 'cpu_s': children_cpu_s() - cpu_before,
            'embeddings': embeddings}


def run_packed(concepts: list[dict], config: Path, run_dir: Path) -> dict:
    """One tools/train.py process for all concepts; timed launch to last file."""
    cpu_before = children_cpu_s()
    launched_at, process_s = launch(train_command(str(config), run_dir), run_dir.parent /
                                    f'{run_dir.name}.log')
    wall_s = last_embedding_time([run_dir]) - launched_at
    embeddings = {c['placeholder_token']: str(run_dir / 'concepts' / concept_folder_name(
        c['placeholder_token']) / 'learned_embeds.safetensors') for c in concepts}
    return {'wall_s': wall_s, 'process_s': [process_s], 'cpu_s': children_cpu_s() - cpu_before,
            'embeddings': embeddings}


def steps_taken(approach: str, run_dir: Path, token: str) -> int | None:
    """How many steps the concept trained (its stop step), from the run's own record."""
    try:
        if approach == 'sequential':
            signal = json.loads((run_dir / concept_folder_name(token) /
                                 'learning_signal.json').read_text())
            return (signal.get('stopped') or {}).get('step', signal['steps'][-1])
        queue = json.loads((run_dir / 'concepts.json').read_text())
        return queue['queue']['steps'][queue['tokens'].index(token)]
    except (OSError, ValueError, KeyError, IndexError):
        return None


class ConceptScorer:
    """Gap closed and text ratio of embedding files, one evaluator per concept
    (its baseline rows measured once) and one evaluation per distinct file.

    Scores are kept in ``OUT/scores.json`` by token and file digest, so scoring
    again (``--score-saved``) evaluates only files not scored before.
    """

    def __init__(self, concepts: list[dict], out: Path, num_samples: int | None):
        extra = [] if num_samples is None else ['--num-samples', str(num_samples)]
        self.evaluators = {c['placeholder_token']: SnapshotEvaluator(
            SINGLE_CONFIG, [*extra, '--cfg-options', *single_options(c)]) for c in concepts}
        self.out = out
        self.store = out / 'scores.json'
        self.cache: dict[str, dict] = (json.loads(self.store.read_text())
                                       if self.store.is_file() else {})

    def __call__(self, token: str, embedding: Path) -> dict:
        digest = file_digest(embedding)
        key = f'{token} {digest}'
        if key not in self.cache:
            started = time.perf_counter()
            rows = self.evaluators[token](Path(embedding), self.out / concept_folder_name(token)
                                          / digest[:12])
            self.cache[key] = {'gap_closed': gap_closed(rows), 'text_ratio': text_ratio(rows),
                               'evaluate_s': time.perf_counter() - started}
            with atomic_write(self.store) as tmp:
                tmp.write_text(json.dumps(self.cache, indent=1) + '\n')
        return {**self.cache[key], 'digest': digest[:12]}


def score_runs(result: dict, out: Path, num_samples: int | None, save=lambda: None) -> None:
    """Score every run's embeddings (untimed) and add the quality table to ``result``.

    Quality per approach is its first round's files; ``same_files_every_round``
    says whether later rounds wrote the same bytes. Also usable on the saved
    json of an interrupted benchmark.
    """
    print('evaluating every distinct embedding (untimed) ...', flush=True)
    concepts = result['concepts']
    tokens = [c['placeholder_token'] for c in concepts]
    scorer = ConceptScorer(concepts, out / 'eval', num_samples)
    for run in result['runs']:
        run['quality'] = {token: scorer(token, Path(path))
                          for token, path in run['embeddings'].items()}
        save()
    approaches = list(dict.fromkeys(run['approach'] for run in result['runs']))
    first = {a: next(r for r in result['runs'] if r['approach'] == a) for a in approaches}
    result['quality'] = quality_rows({a: first[a]['quality'] for a in approaches},
                                     approaches, tokens)
    result['same_files_every_round'] = {
        a: all(r['quality'][t]['digest'] == first[a]['quality'][t]['digest']
               for r in result['runs'] if r['approach'] == a for t in tokens)
        for a in approaches}
    save()


def report_markdown(result: dict) -> str:
    approaches = list(dict.fromkeys(run['approach'] for run in result['runs']))
    return (timing_markdown(result['summary'], result['runs']) + '\n\n'
            + quality_markdown(result['quality'], approaches) + '\n\n'
            + f"Embedding files identical in every round: {result['same_files_every_round']}\n")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out = args.out_dir.resolve()
    if args.score_saved:
        return score_saved(out, args.num_samples)
    if (out / 'concepts_per_hour.json').exists():
        raise SystemExit(f'{args.out_dir} already holds a benchmark; pass another --out-dir, '
                         'or remove that one.')
    out.mkdir(parents=True, exist_ok=True)
    make_draws(out, args.num_concepts)
    concepts = toy_concepts(out, args.num_concepts)
    tokens = [c['placeholder_token'] for c in concepts]
    configs = {f'packed_{lanes}': write_packed_config(out / f'packed_{lanes}.py', concepts,
                                                      lanes, args.max_steps)
               for lanes in args.lanes}
    approaches = ['sequential', *configs]
    result = {'concepts': concepts, 'settings': {k: str(v) if isinstance(v, Path) else v
                                                 for k, v in vars(args).items()},
              'command': 'python tools/concepts_per_hour.py ' + ' '.join(argv or sys.argv[1:]),
              'runs': []}

    def save() -> None:
        with atomic_write(out / 'concepts_per_hour.json') as tmp:
            tmp.write_text(json.dumps(result, indent=2) + '\n')

    for number in range(1, args.rounds + 1):
        for approach in approaches:  # interleaved: drift hits every approach alike
            load = wait_for_quiet(args.max_load, args.load_wait)
            print(f'round {number}/{args.rounds}: {approach} (1-minute load '
                  f"{load['loads'][-1]:.2f}, waited {load['waited_s']:.0f} s) ...", flush=True)
            run_dir = out / f'round_{number}' / approach
            if approach == 'sequential':
                run = run_sequential(concepts, run_dir, args.max_steps)
            else:
                run = run_packed(concepts, configs[approach], run_dir)
            run.update(round=number, approach=approach, load=load,
                       steps={t: steps_taken(approach, run_dir, t) for t in tokens})
            print(f"  {run['wall_s']:.1f} s to the last embedding file "
                  f"({concepts_per_hour(len(tokens), run['wall_s']):.0f} concepts/hour)",
                  flush=True)
            result['runs'].append(run)
            result['summary'] = summarize(result['runs'], len(tokens))
            save()

    return finish(result, out, args.num_samples, save)


def finish(result: dict, out: Path, num_samples: int | None, save) -> dict:
    score_runs(result, out, num_samples, save)
    text = report_markdown(result)
    with atomic_write(out / 'concepts_per_hour.md') as tmp:
        tmp.write_text(text)
    print(text + f"Wrote {out / 'concepts_per_hour.json'} and {out / 'concepts_per_hour.md'}")
    return result


def score_saved(out: Path, num_samples: int | None) -> dict:
    """Score the runs of an interrupted benchmark (its json is saved after every run)."""
    saved = out / 'concepts_per_hour.json'
    if not saved.is_file():
        raise SystemExit(f'--score-saved: {saved} does not exist; run the benchmark first.')
    result = json.loads(saved.read_text())
    if not result.get('runs'):
        raise SystemExit(f'--score-saved: {saved} holds no finished run yet.')
    result['scored_saved'] = True  # the benchmark was stopped before its last run

    def save() -> None:
        with atomic_write(saved) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + '\n')

    return finish(result, out, num_samples, save)


if __name__ == '__main__':
    main()
