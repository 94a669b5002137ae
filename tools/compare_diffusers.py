"""Time mmti's training CLI against diffusers' examples/textual_inversion script.

    python tools/compare_diffusers.py --diffusers-script /path/to/textual_inversion.py \
        --config configs/textual_inversion_tiny.py --batch-size 4 --steps 20 80 --threads 2

Both run as separate processes on the same model folder, images, resolution,
batch size, learning rate and thread count. Each runs twice (the two
``--steps``); the difference in wall time divided by the difference in steps
is the steady per-step cost, free of start-up. That is repeated
``--repeats`` times, the tools taking turns, and the median kept: machine
speed drifts, and turns make the drift hit both alike. Peak RSS comes from
the kernel's accounting of each child process.

diffusers' script imports torchvision only for ``RandomHorizontalFlip`` on a
PIL image; torchvision cannot be installed beside the CPU torch here, so the
unmodified script runs through ``tools/diffusers_example_runner.py`` with
mmti's PIL stand-in for it (nothing of diffusers is stored in this repository). Pass the script from a diffusers checkout; it
logs to TensorBoard, so ``pip install tensorboard`` first.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mmengine.config import Config, DictAction

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # configs import mmti
def run_measured(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of this child alone, and its output tail."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f'{cmd[:3]} failed ({proc.returncode}):\n{output[-3000:]}')
    return seconds, usage.ru_maxrss / 1024, output[-2000:]


def diffusers_cmd(script: Path, cfg: Config, batch: int, steps: int, out: Path) -> list[str]:
    dataset = cfg.train_dataloader.dataset
    return [sys.executable, str(ROOT / 'tools' / 'diffusers_example_runner.py'), str(script),
            '--pretrained_model_name_or_path', str(cfg.model.pretrained_model),
            '--train_data_dir', str(dataset.data_root),
            '--placeholder_token', cfg.model.placeholder_token,
            '--initializer_token', cfg.model.initializer_token,
            '--num_vectors', str(cfg.model.get('num_vectors', 1)),
            '--learnable_property', dataset.get('learnable_property', 'object'),
            '--resolution', str(_resolution(cfg)), '--center_crop',
            '--train_batch_size', str(batch), '--max_train_steps', str(steps),
            '--learning_rate', str(cfg.optim_wrapper.optimizer.lr), '--lr_scheduler', 'constant',
            '--lr_warmup_steps', '0', '--seed', '0', '--dataloader_num_workers', '0',
            '--save_steps', str(10**9), '--checkpointing_steps', str(10**9),
            '--no_safe_serialization', '--output_dir', str(out), '--report_to', 'tensorboard']


def mmti_cmd(config: str, batch: int, steps: int, out: Path, options: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / 'tools' / 'train.py'), config, '--work-dir', str(out),
            '--cfg-options', f'train_dataloader.batch_size={batch}', f'train_cfg.max_iters={steps}',
            'default_hooks.checkpoint.interval=1000000000', 'default_hooks.non_finite=None',
            'default_hooks.embedding_save.interval=0', 'default_hooks.validation_samples=None',
            'default_hooks.logger.interval=1000000000', *options]


def _resolution(cfg: Config) -> int:
    if cfg.train_dataloader.dataset.get('resolution'):
        return int(cfg.train_dataloader.dataset.resolution)
    for step in cfg.train_dataloader.dataset.pipeline:
        if step['type'] in ('CenterCrop', 'RandomCrop'):
            return int(step['size'])
    raise SystemExit('No crop size in the config pipeline.')


def measure_interleaved(commands: dict, steps: tuple[int, int], repeats: int, env: dict, work: Path,
                        run=run_measured) -> list[dict]:
    """Steady ms/step and peak RSS of each tool, from interleaved runs.

    Each repeat runs every tool at both lengths, one tool after the other, so
    a change in machine speed (shared hosts drift by tens of percent over
    minutes) hits all tools alike; the per-step cost is the median over
    repeats of (long - short) / (step difference).

    Args:
        commands: ``{tool: make_cmd(steps, out_dir) -> argv}``, in run order.
        run: ``run(argv, env, cwd) -> (seconds, peak_rss_mb, output)``.
    """
    short, long = steps
    per_step = {name: [] for name in commands}
    rss = dict.fromkeys(commands, 0.0)
    walls = {name: [] for name in commands}
    for repeat in range(repeats):
        for name, make_cmd in commands.items():
            seconds = {}
            for n in steps:
                out = work / f'{name}_{n}_{repeat}'
                seconds[n], peak, _ = run(make_cmd(n, out), env, ROOT)
                rss[name] = max(rss[name], peak)
            per_step[name].append((seconds[long] - seconds[short]) / (long - short))
            walls[name].append(seconds)
    rows = []
    for name in commands:
        median = statistics.median(per_step[name])
        rows.append({'tool': name, 'ms_per_step': 1000 * median, 'steps_per_s': 1 / median,
                     'ms_per_step_each_repeat': [1000 * x for x in per_step[name]],
                     'peak_rss_mb': rss[name], 'wall_s': walls[name]})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--diffusers-script', required=True, type=Path)
    parser.add_argument('--config', default='configs/textual_inversion_tiny.py')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--steps', type=int, nargs=2, default=(20, 80))
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='mmti config overrides (applied to both tools\' settings)')
    parser.add_argument('--diffusers-args', nargs=argparse.REMAINDER, default=[],
                        help='extra arguments for the diffusers script, e.g. --mixed_precision fp16')
    parser.add_argument('--repeats', type=int, default=3,
                        help='interleaved repeats; ms/step is their median (default 3)')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error('--repeats must be at least 1')
    cfg = Config.fromfile(args.config)
    for option in args.cfg_options:  # the same key=value syntax as tools/train.py
        key, value = option.split('=', 1)
        cfg.merge_from_dict({key: DictAction._parse_iterable(value)})
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM='false')
    work = Path(tempfile.mkdtemp(prefix='mmti-vs-diffusers-'))
    try:
        script = args.diffusers_script
        rows = measure_interleaved({
            'diffusers': lambda n, out: (diffusers_cmd(script, cfg, args.batch_size, n, out)
                                         + list(args.diffusers_args)),
            'mmti': lambda n, out: mmti_cmd(args.config, args.batch_size, n, out,
                                            list(args.cfg_options)),
        }, args.steps, args.repeats, env, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    speedup = rows[0]['ms_per_step'] / rows[1]['ms_per_step']
    if args.json:
        print(json.dumps({'rows': rows, 'mmti_speedup': speedup}, indent=2))
    else:
        print('| tool | ms/step | steps/s | peak RSS MB |\n|---|---|---|---|')
        for r in rows:
            print(f"| {r['tool']} | {r['ms_per_step']:.1f} | {r['steps_per_s']:.1f} | {r['peak_rss_mb']:.0f} |")
        print(f'\nmmti throughput = {speedup:.2f}x diffusers; batch {args.batch_size}, '
              f'{_resolution(cfg)} px, {args.threads} threads, steps {args.steps[0]} vs {args.steps[1]}, '
              f'median of {args.repeats} interleaved repeats.')
    return rows


if __name__ == '__main__':
    main()
