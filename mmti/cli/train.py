"""Train a Textual Inversion embedding from a config.

    python tools/train.py configs/textual_inversion_tiny.py
    bash tools/dist_train.sh configs/textual_inversion.py 8

A mistake in the input (config path or key, data, resume file, a work dir
that already holds a run) is answered with one line and exit status 2,
before anything is written; ``--debug`` shows the traceback.
"""
import argparse
import os
import os.path as osp
import re
import shlex
import sys
import time
from pathlib import Path

import torch.distributed as dist
from mmengine.config import Config

from mmti.engine import (RunFinished, WorkDirLock, build_runner,  # noqa: E402
                         is_rank_zero, load_user_config, prepare_launch, read_last_checkpoint,
                         refuse_previous_run)
from mmti.engine.console import quiet_library_notices  # noqa: E402
from mmti.engine.hooks import (ConceptQueueHook, CurvesHook, EmbeddingSaveHook,  # noqa: E402
                               LearningSignalHook, ProgressBarHook, ValidationSampleHook)
from mmti.engine.hooks.concept_outputs import SUMMARY_FILE, concept_embedding_file  # noqa: E402
from mmti.engine.hooks.curves_hook import CURVES_FILE  # noqa: E402
from mmti.engine.hooks.progress_bar_hook import format_duration  # noqa: E402
from mmti.utils import UserError, add_cfg_options, command_prefix, prog_name, run_cli  # noqa: E402

PROG = prog_name('tools/train.py')
# What Ctrl-C reports: filled in as main() learns it.
_run: dict = {}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description='Train a Textual Inversion embedding')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs, checkpoints and embeddings go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the latest checkpoint in the work dir, or from PATH')
    parser.add_argument('--amp', action='store_true', help='mixed precision (GPU)')
    add_cfg_options(parser, help='override config entries, e.g. train_cfg.max_iters=500')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args: argparse.Namespace) -> Config:
    cfg = load_user_config(args.config, args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise UserError(f'--resume: checkpoint {args.resume} does not exist; pass an '
                            'iter_*.pth of the run, or --resume alone for the work dir\'s latest.')
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def resume_command(argv: list[str], work_dir: str) -> str:
    """The command line that continues this run: same arguments, ``--resume``."""
    kept, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == '--resume':
            # --resume PATH: its value goes too
            skip = i + 1 < len(argv) and not argv[i + 1].startswith('-') and osp.isfile(argv[i + 1])
            continue
        if arg.startswith('--resume='):
            continue
        kept.append(arg)
    if '--work-dir' not in kept and not any(a.startswith('--work-dir=') for a in kept):
        kept += ['--work-dir', work_dir]
    prefix = command_prefix(PROG)
    script = os.environ.get('MMTI_DIST_TRAIN')
    if script and '--launcher' in kept:  # started by tools/dist_train.sh: through it again
        at = kept.index('--launcher')
        kept = [kept[0], os.environ.get('MMTI_DIST_TRAIN_PROCS', '1'),
                *kept[1:at], *kept[at + 2:]]
        prefix = ['bash', script]
    # Options last: an option string also ends a --cfg-options list.
    return shlex.join([*prefix, *kept, '--resume'])


def on_interrupt() -> str:
    """What Ctrl-C leaves: the last checkpoint (and how to continue), or nothing."""
    work_dir = _run.get('work_dir')
    if work_dir is None:
        return 'interrupted before training started; nothing was written.'
    try:
        checkpoint, _ = read_last_checkpoint(work_dir)
    except UserError:
        checkpoint = None
    if checkpoint is None or not osp.isfile(checkpoint):
        return (f'interrupted before the first checkpoint; nothing to resume in {work_dir}. '
                'Start again with the same command.')
    step = osp.splitext(osp.basename(checkpoint))[0].rsplit('_', 1)[-1]
    return (f'interrupted; kept {checkpoint} (step {step}). Continue with: '
            f'{resume_command(_run["argv"], work_dir)}')


def a1111_name(token: str) -> str:
    """The file name A1111 would use: its prompt word is the file's name, so
    it leaves out what Windows forbids in file names (``<>:"/\\|?*``) and
    what A1111's prompt syntax reads as emphasis, weights or separators
    (``()[]{},``), which would keep the word from matching; a leading dot
    (a hidden file), a name Windows reserves (``con``, ``nul``, ``com1``) or
    a prompt keyword of A1111 (``AND``, ``BREAK``) gets ``-concept`` after it."""
    word = re.sub(r'[<>:"/\\|?*\s()\[\]{},]+', '', token).lstrip('.')
    if not word or word.upper() in _NOT_A1111_WORDS:
        word = f'{word or "my"}-concept'
    return word + '.safetensors'


_NOT_A1111_WORDS = {'CON', 'PRN', 'AUX', 'NUL', 'AND', 'BREAK',
                    *(f'{port}{n}' for port in ('COM', 'LPT') for n in range(1, 10))}


def embedding_keys(path: Path) -> list[str]:
    """The tensor names in a safetensors file (its header only)."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework='pt') as f:
            return list(f.keys())
    except Exception:  # a .bin, or unreadable: the summary says less
        return []


def run_summary(runner, seconds: float) -> list[str]:
    """What the run produced, where it is and how to use it: a few lines."""
    work_dir = Path(runner.work_dir)
    hooks = {type(h): h for h in runner.hooks}
    resumed_at = getattr(hooks.get(ProgressBarHook), 'start_step', 0)
    resumed = f', resumed at step {resumed_at}' if resumed_at else ''
    lines = [f'Done: {runner.iter} steps in {format_duration(seconds)}{resumed}.']
    stopped = getattr(hooks.get(LearningSignalHook), 'stopped', None)
    if stopped:
        lines[0] = (f"Done: learned; stopped at step {stopped['step']} of at most "
                    f'{runner.max_iters} in {format_duration(seconds)}{resumed} '
                    f"({stopped['reason']}).")
    if ConceptQueueHook in hooks:
        return concept_summary(runner, hooks[ConceptQueueHook], seconds, resumed)
    embedding = None
    if EmbeddingSaveHook in hooks:
        embedding = work_dir / hooks[EmbeddingSaveHook].filename
    if embedding is not None and embedding.is_file():
        lines.append(f'  embedding: {embedding}')
    else:
        embedding = None
    if ValidationSampleHook in hooks:
        samples = sorted((work_dir / 'samples').glob('step_*.png'),
                         key=lambda p: int(p.stem.split('_')[-1]))
        if samples:
            lines.append(f'  samples:   {samples[-1]}')
    if CurvesHook in hooks and (work_dir / CURVES_FILE).is_file():
        lines.append(f'  curves:    {work_dir / CURVES_FILE}')
    log_file = getattr(runner.logger, 'log_file', None)
    if log_file:
        lines.append(f'  log:       {log_file}')
    if embedding is None:
        return lines
    keys = embedding_keys(embedding)
    token = str(runner.cfg.model.get('placeholder_token') or (keys[0] if keys else ''))
    if {'clip_l', 'clip_g'} <= set(keys):  # SDXL's one-file layout: one call per encoder
        lines.append(f"diffusers:  state = safetensors.torch.load_file('{embedding}'); "
                     f"pipe.load_textual_inversion(state['clip_l'], token='{token}', "
                     'text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer); the same with '
                     "state['clip_g'], pipe.text_encoder_2, pipe.tokenizer_2")
    else:
        lines.append(f"diffusers:  pipe.load_textual_inversion('{embedding}')  "
                     f'then prompt with {token}')
    name = a1111_name(token)
    lines.append(f'A1111:      copy it to stable-diffusion-webui/embeddings/{name} and write '
                 f'{Path(name).stem} in the prompt')
    return lines


def concept_summary(runner, queue_hook, seconds: float, resumed: str) -> list[str]:
    """The lines after the first of a many-concept run: one per concept, then the files."""
    work_dir = Path(runner.work_dir)
    rows = queue_hook.summary_rows()
    done = sum(r['status'] == 'done' for r in rows)
    lines = [f'Done: {done} of {len(rows)} concepts in {runner.iter} steps, '
             f'{format_duration(seconds)}{resumed}.']
    width = max(len(r['concept']) for r in rows)
    for row in rows:
        if row['status'] == 'waiting':
            lines.append(f"  {row['concept']:<{width}}  not started (raise train_cfg.max_iters "
                         'and resume)')
            continue
        kind = queue_hook.stops.get(row['concept'], {}).get('kind')
        why = {'learned': 'learned', 'max_steps': 'reached max_steps',
               'capped': 'cut by max_iters',
               'not_learning': 'NOT learned (concepts.md says why)'}.get(kind, kind)
        stop = queue_hook.stops.get(row['concept'])
        lines.append(f"  {row['concept']:<{width}}  {row['steps']:>5} steps, {why}: "
                     f"{concept_embedding_file(work_dir, row['concept'], stop)}")
    combined = work_dir / hooks_filename(runner)
    if combined.is_file():
        lines.append(f'  all concepts, one file (mmti): {combined}')
    log_file = getattr(runner.logger, 'log_file', '')
    lines.append(f'  summary: {work_dir / SUMMARY_FILE}   log: {log_file}')
    lines.append("diffusers:  pipe.load_textual_inversion('<one concept file>'), one call per "
                 'concept; A1111: copy each file to stable-diffusion-webui/embeddings/')
    return lines


def hooks_filename(runner) -> str:
    hook = next((h for h in runner.hooks if isinstance(h, EmbeddingSaveHook)), None)
    return hook.filename if hook is not None else 'learned_embeds.safetensors'


def main(argv: list[str] | None = None) -> None:
    started = time.monotonic()
    argv = list(sys.argv[1:] if argv is None else argv)
    _run.clear()
    args = parse_args(argv)
    quiet_library_notices()  # before the config's imports load transformers' models
    cfg = build_config(args)
    prepare_launch(cfg, args.launcher)
    # Every rank reads the work dir (same refusal everywhere, so torchrun sees
    # one clean exit status); only rank 0 writes there: the lock.
    resume = bool(cfg.get('resume'))
    refuse_previous_run(cfg.work_dir, resume=resume)
    lock = WorkDirLock(cfg.work_dir) if is_rank_zero() else None

    def claim_work_dir() -> None:
        refusal = None
        if lock is not None:
            try:
                lock.acquire()
                # Another run may have finished between the first look and the lock.
                refuse_previous_run(cfg.work_dir, resume=resume)
            except UserError as err:
                lock.release()
                refusal = str(err)
        if dist.is_available() and dist.is_initialized():  # the other ranks learn rank 0's answer
            answer = [refusal]
            dist.broadcast_object_list(answer, src=0)
            refusal = answer[0]
        if refusal:
            raise UserError(refusal)
        _run.update(work_dir=cfg.work_dir, argv=argv)

    try:
        try:
            runner = build_runner(cfg, claim_work_dir)
        except RunFinished as done:
            if is_rank_zero():  # every rank decides the same; one says so
                print(f'{PROG}: {done}; {done.hint}.', file=sys.stderr)
            return
        _run.update(work_dir=cfg.work_dir, argv=argv)
        runner.train()  # a divergence raises NonFiniteLossError: one line, what was kept
    finally:
        if lock is not None:
            lock.release()
    if is_rank_zero():
        print('\n'.join(run_summary(runner, time.monotonic() - started)), flush=True)
    # A process that exits with its group alive can abort at interpreter exit
    # ("terminate called without an active exception": gloo's threads still
    # hold work; pytorch/pytorch#190489), failing a finished run; so can one
    # that tears its group down while collectives it queued are in flight
    # (seen in CI, on the rank that finished first). gloo's barrier waits for
    # every collective queued before it, so the group is idle when destroyed.
    # Only after success: a rank that failed mid-collective would wait here.
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def cli(argv: list[str] | None = None) -> None:
    run_cli(PROG, main, argv, on_interrupt=on_interrupt)


if __name__ == '__main__':
    cli()
