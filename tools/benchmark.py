"""Time mmti's real training step, stage by stage, against its compute floor.

    python tools/benchmark.py configs/textual_inversion_tiny.py --steps 30 --warmup 5
    python tools/benchmark.py configs/textual_inversion.py --batch-sizes 1,2,4,8 --json

The model, data pipeline and optimizer are built exactly as tools/train.py
builds them (same config, same runner); the step timed is the model's own
``train_step``. The compute floor is the unavoidable part of that step on the
same model and batch: text encoder and UNet, forward and backward, with the
latents, noise and timesteps computed beforehand.
"""
import argparse
import json
import os.path as osp
import resource
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout
from mmti.engine import build_runner, check_cfg_options  # noqa: E402
from mmti.registry import HOOKS  # noqa: E402
from mmti.utils import run_cli  # noqa: E402

STAGES = ('data', 'vae', 'text_encoder', 'unet_forward', 'backward', 'optimizer')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark the Textual Inversion training step')
    parser.add_argument('config')
    parser.add_argument('--steps', type=int, default=30, help='timed steps')
    parser.add_argument('--warmup', type=int, default=5, help='untimed steps first')
    parser.add_argument('--batch-sizes', default=None,
                        help='comma-separated per-process batch sizes (default: the config\'s)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--profile', type=int, default=0, metavar='N',
                        help='also profile N real and N floor steps with torch.profiler: ops and '
                             'kernel launches per step, the ops costing most host time')
    parser.add_argument('--json', action='store_true', help='print JSON instead of a table')
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        parser.error(f'config {args.config} does not exist.')
    if args.steps < 1 or args.warmup < 0 or args.profile < 0:
        parser.error('--steps must be at least 1, --warmup and --profile at least 0.')
    if args.batch_sizes is not None:
        try:
            args.batch_sizes = [int(size) for size in args.batch_sizes.split(',')]
        except ValueError:
            args.batch_sizes = []
        if not args.batch_sizes or min(args.batch_sizes) < 1:
            parser.error('--batch-sizes must be whole numbers of at least 1, comma-separated, '
                         'e.g. 1,2,4.')
    return args


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class StageTimer:
    """Wall time per stage, with a device sync at each boundary (breakdown only)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.totals = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def stage(self, name: str):
        synchronize(self.device)
        start = time.perf_counter()
        yield
        synchronize(self.device)
        self.totals[name] += time.perf_counter() - start

    def wrap(self, owner, attr: str, name: str):
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            with self.stage(name):
                return original(*args, **kwargs)

        setattr(owner, attr, timed)
        return lambda: setattr(owner, attr, original) if attr in vars(owner) else None


def peak_memory_mb(device: torch.device) -> float:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def stage_breakdown(model, optim_wrapper, batches, steps: int, device) -> dict[str, float]:
    timer = StageTimer(device)
    restore = [timer.wrap(model, 'encode_posterior', 'vae'),
               timer.wrap(model, 'encode_prompt', 'text_encoder'),
               timer.wrap(model.unet, 'forward', 'unet_forward'),
               timer.wrap(optim_wrapper, 'backward', 'backward'),
               timer.wrap(optim_wrapper, 'step', 'optimizer'),
               timer.wrap(optim_wrapper, 'zero_grad', 'optimizer')]
    try:
        for _ in range(steps):
            with timer.stage('data'):
                batch = next(batches)
            model.train_step(batch, optim_wrapper)
    finally:
        for undo in restore:
            undo()
    return {name: 1000 * total / steps for name, total in timer.totals.items()}


class ComputeFloor:
    """Text encoder + UNet, forward and backward, with everything else precomputed."""

    def __init__(self, model, batch: dict):
        self.model = model
        data = model.data_preprocessor(batch, True)
        self.captions = data['captions']
        with torch.no_grad():
            mean, std = model.encode_posterior(data['inputs'], data.get('latent_keys'))
            latents = (mean + std * torch.randn_like(std)).float() * model.vae.config.scaling_factor
            self.noise = torch.randn_like(latents)
            self.timesteps = torch.randint(0, model.noise_scheduler.config.num_train_timesteps,
                                           (latents.shape[0],), device=latents.device)
            self.noisy = model.noise_scheduler.add_noise(latents, self.noise, self.timesteps)
            self.noisy = self.noisy.to(next(model.unet.parameters()).dtype)
        model.tokenize(self.captions)  # tokenisation is cached in the real step too
        self.rows = model.token_embedding.concept_rows(model.placeholder_token)

    def __call__(self) -> None:
        states = self.model.encode_prompt(self.captions).to(self.noisy.dtype)
        prediction = self.model.unet(self.noisy, self.timesteps, states).sample
        F.mse_loss(prediction.float(), self.noise).backward()
        self.rows.grad = None


def timed(fn, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


# Host-side calls that start device work; their count per step is what a
# launch-bound step (GPU faster than the CPU can feed it) pays for.
LAUNCH_EVENTS = ('cudaLaunchKernel', 'cuLaunchKernel', 'cudaLaunchKernelExC', 'cudaMemcpyAsync',
                 'cudaMemsetAsync')


def profile_steps(fn, steps: int, device, top: int = 8) -> dict:
    """Per-step op and launch counts of ``fn`` and the ops costing most host time."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    synchronize(device)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        synchronize(device)
    events = prof.key_averages()
    aten = [e for e in events if e.key.startswith('aten::')]
    heaviest = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        'steps': steps,
        # Nested ops count too (aten::linear and the aten::addmm inside it).
        'aten_ops_per_step': sum(e.count for e in aten) / steps,
        'launches_per_step': sum(e.count for e in events if e.key in LAUNCH_EVENTS) / steps,
        'top_self_cpu_ms_per_step': {e.key: e.self_cpu_time_total / 1000 / steps
                                     for e in heaviest},
    }


def time_interleaved(model, optim_wrapper, batches, floor: ComputeFloor, steps: int,
                     warmup: int, device) -> tuple[list[float], list[float]]:
    """Alternate real steps and floor steps, so drift in machine speed hits both alike."""
    step_times, floor_times = [], []
    for i in range(warmup + steps):
        step = timed(lambda: model.train_step(next(batches), optim_wrapper), device)
        floor_time = timed(floor, device)
        if i >= warmup:
            step_times.append(step)
            floor_times.append(floor_time)
    return step_times, floor_times


def learning_signal_cost(cfg: Config, model, dataloader, step, device,
                         repeats: int = 3) -> dict:
    """One measurement of the config's learning signal (the hook as configured),
    and the time it adds to training at its ``interval``.

    Each measurement is timed next to a training step (``step()``), and the
    share is the median of those pairs: drift in the machine's speed moves
    both alike, as in :func:`time_interleaved`.
    """
    hook_cfg = cfg.default_hooks.get('learning_signal')
    if not hook_cfg:
        return {}
    hook = HOOKS.build(hook_cfg)
    signal = hook.build_signal(dataloader, seed=0)
    signal(model)  # warm-up: first use of each batch shape
    pairs = [(timed(lambda: signal(model), device), timed(step, device)) for _ in range(repeats)]
    seconds = statistics.median(measured for measured, _ in pairs)
    return {'signal_ms': 1000 * seconds, 'signal_samples': signal.num_samples,
            'signal_overhead': statistics.median(
                measured / (hook.interval * step_s) for measured, step_s in pairs)}


def benchmark(cfg: Config, batch_size: int, steps: int, warmup: int, profile: int = 0) -> dict:
    cfg = cfg.copy()
    cfg.train_dataloader.batch_size = batch_size
    # mmengine shares loggers/visualizers by experiment name; one per run.
    cfg.experiment_name = f'benchmark_bs{batch_size}_{time.time_ns()}'
    runner = build_runner(cfg)
    model = runner.model
    device = next(p.device for p in model.parameters())
    dataloader = runner.build_dataloader(cfg.train_dataloader, seed=runner.seed)
    optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    model.train()
    batches = iter(dataloader)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)

    floor = ComputeFloor(model, next(batches))
    step_times, floor_times = time_interleaved(model, optim_wrapper, batches, floor, steps,
                                               warmup, device)
    memory = peak_memory_mb(device)
    stages = stage_breakdown(model, optim_wrapper, batches, max(3, steps // 3), device)
    median = statistics.median(step_times)
    floor_median = statistics.median(floor_times)
    signal = learning_signal_cost(
        cfg, model, dataloader, lambda: model.train_step(next(batches), optim_wrapper), device)
    profiles = {}
    if profile:
        profiles = {'step': profile_steps(lambda: model.train_step(next(batches), optim_wrapper),
                                          profile, device),
                    'floor': profile_steps(floor, profile, device)}
    return {
        'config': cfg.filename, 'device': str(device), 'batch_size': batch_size,
        'threads': torch.get_num_threads(), 'steps': steps, 'warmup': warmup,
        'median_ms': 1000 * median, 'p90_ms': 1000 * percentile(step_times, 0.9),
        'steps_per_s': 1 / median, 'images_per_s': batch_size / median,
        'peak_memory_mb': memory,
        'peak_memory_kind': 'max_memory_allocated' if device.type == 'cuda' else 'max RSS',
        'stages_ms': stages,
        'floor_median_ms': 1000 * floor_median,
        'ratio_to_floor': median / floor_median,
        **signal,
        **({'profile': profiles} if profiles else {}),
    }


def format_table(rows: list[dict]) -> str:
    head = ('| batch | median ms | p90 ms | steps/s | images/s | peak MB | floor ms | step/floor | '
            + ' | '.join(STAGES) + ' |')
    lines = [head, '|' + '---|' * (8 + len(STAGES))]
    for r in rows:
        stages = ' | '.join(f"{r['stages_ms'][s]:.1f}" for s in STAGES)
        lines.append(f"| {r['batch_size']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | "
                     f"{r['steps_per_s']:.2f} | {r['images_per_s']:.1f} | {r['peak_memory_mb']:.0f} | "
                     f"{r['floor_median_ms']:.1f} | {r['ratio_to_floor']:.2f} | {stages} |")
    for r in rows:
        if 'signal_ms' in r:
            lines.append(f"\nbatch {r['batch_size']}: one learning-signal measurement "
                         f"({r['signal_samples']} samples) {r['signal_ms']:.1f} ms, "
                         f"adds {100 * r['signal_overhead']:.1f}% to training time at its interval")
        for name, p in r.get('profile', {}).items():
            top = ', '.join(f'{k} {v:.2f}' for k, v in p['top_self_cpu_ms_per_step'].items())
            lines.append(f"\nbatch {r['batch_size']}, {name}: {p['aten_ops_per_step']:.0f} aten ops "
                         f"and {p['launches_per_step']:.0f} device launches per step; most host "
                         f'time (self ms/step, under the profiler): {top}')
    first = rows[0]
    lines.append(f"\n{first['config']} on {first['device']} ({first['threads']} threads), "
                 f"{first['steps']} timed steps after {first['warmup']} warm-up; peak memory is "
                 f"{first['peak_memory_kind']}; stage times (ms/step) include a device sync at "
                 'each boundary.')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        check_cfg_options(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = 'none'
    cfg.log_level = 'WARNING'
    sizes = args.batch_sizes or [cfg.train_dataloader.batch_size]
    # The runner wants a work dir (logs, config dump); nothing of it is a result.
    with tempfile.TemporaryDirectory(prefix='mmti-benchmark-') as work_dir:
        cfg.work_dir = work_dir
        rows = [benchmark(cfg, size, args.steps, args.warmup, args.profile) for size in sizes]
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return rows


if __name__ == '__main__':
    run_cli('tools/benchmark.py', main)
