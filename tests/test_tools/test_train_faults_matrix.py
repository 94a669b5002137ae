"""tools/train.py when a run diverges or dies mid-save: what is kept, what is said.

Each case asserts the exit status, a one-line message naming the problem and
the kept files, and that every file already in the work dir is byte-identical
afterwards. Divergence is real (a learning rate that explodes at a chosen
iteration) or injected through a public hook point (``train_fault_hooks``:
the optimizer's parameters set to inf right after an update, as an overflowing
update would), at exactly a checkpoint step, a snapshot step or the last step.
"""
import itertools
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from fault_matrix import assert_kept, assert_refused, snapshot
from mmti_testing import CAT_TOY, REPO_ROOT, TINY_SD
from safetensors.torch import load_file
from tool_runner import load_tool

import train_fault_hooks  # noqa: F401  (registers the fault hooks in-process)
from mmti.utils import USAGE_ERROR, run_cli

PROG = 'tools/train.py'
BASE_CONFIG = REPO_ROOT / 'configs' / 'textual_inversion_tiny.py'
HOOKS_DIR = os.path.dirname(train_fault_hooks.__file__)
# tools/train.py answers through run_cli (status 2) once it has cli(); before
# that it catches NonFiniteLossError itself and exits with status 1.
STATUS = USAGE_ERROR
_names = itertools.count()


def write_config(folder, *, max_iters: int, ckpt_interval: int, keep: int, embed_interval: int,
                 guard: bool = True, extra_hooks: tuple[str, ...] = (),
                 scheduler: str | None = None) -> str:
    """A tiny-model config (batch 1, no sampling) with the given intervals.

    ``guard=False`` leaves out NonFiniteLossHook, so the saving hooks' own
    checks are what stops the run.
    """
    hooks = list(extra_hooks)
    name = f'faults_{next(_names)}'
    text = f"""
_base_ = [{str(BASE_CONFIG)!r}]
custom_imports = dict(imports=['train_fault_hooks'], allow_failed_imports=False)
experiment_name = {name!r}  # unique: in-process runs must not share a MessageHub
model = dict(pretrained_model={str(TINY_SD)!r}, validation_cfg=dict(num_inference_steps=2))
train_dataloader = dict(batch_size=1, dataset=dict(data_root={str(CAT_TOY)!r}))
train_cfg = dict(max_iters={max_iters})
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={ckpt_interval}, max_keep_ckpts={keep}),
                     non_finite={"dict()" if guard else None},
                     embedding_save=dict(interval={embed_interval}),
                     validation_samples=None)
custom_hooks = [{', '.join(hooks)}]
"""
    if scheduler:
        text += f'param_scheduler = {scheduler}\n'
    path = folder / f'{name}.py'
    path.write_text(text)
    return str(path)


def inject_inf(step: int, value: str = 'inf') -> str:
    return f"dict(type='SetTrainableRows', step={step}, value={value!r})"


def train(capsys, config: str, work_dir, *args: str, options: tuple[str, ...] = ()
          ) -> tuple[int, str]:
    """Run tools/train.py in-process as its command line would; (status, stderr)."""
    argv = [config, '--work-dir', str(work_dir), *args]
    argv += ['--cfg-options', *options] if options else []
    code = 0
    try:
        run_cli(PROG, load_tool('train').main, argv)
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    if isinstance(code, str):  # train.py's own `raise SystemExit(message)`: Python prints it
        err, code = f'{err}{code}\n', 1
    return code, err


def kept_files(work_dir, *replaced: str) -> dict[str, str]:
    """``snapshot(work_dir)`` less the files a run is expected to replace.

    mmengine rewrites its dump of the config (``<config name>.py``) on every
    run, with the options of that run (e.g. ``resume=True``). The runs here are
    in one process, where log lines printed before a new runner exists still
    reach the previous run's log file (a new process, as from the command
    line, starts a log of its own), so earlier logs are left out too.
    """
    return {name: digest for name, digest in snapshot(work_dir).items()
            if name not in replaced and not re.fullmatch(r'faults_\d+\.py', name)
            and not re.fullmatch(r'\d{8}_\d{6}/.*\.log', name)}


def prepare_work_dir(tmp_path):
    """A work dir holding a note of the user's (a finished run's files would be
    refused without --resume, see test_train_matrix.py)."""
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / 'notes.txt').write_text('my notes')
    return work_dir


def assert_checkpoints(work_dir, kept_steps: list[int]) -> None:
    """Exactly these checkpoints, all finite, last_checkpoint at the newest, no temp files."""
    assert sorted(p.name for p in work_dir.glob('iter_*.pth')) == sorted(
        f'iter_{s}.pth' for s in kept_steps)
    for step in kept_steps:
        checkpoint = torch.load(work_dir / f'iter_{step}.pth', weights_only=True)
        assert checkpoint['meta']['iter'] == step
        assert all(torch.isfinite(v).all() for v in checkpoint['state_dict'].values())
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / f'iter_{kept_steps[-1]}.pth')
    assert not [p.name for p in work_dir.iterdir() if p.name.startswith('.')]


def kept_pattern(work_dir, ckpt_step: int, embed_step: int) -> str:
    ckpt = re.escape(str(work_dir / f'iter_{ckpt_step}.pth'))
    return (rf'Kept: checkpoint {ckpt} \(iteration {ckpt_step}; last_checkpoint points at it\), '
            rf'learned_embeds-steps-{embed_step}\.safetensors \(iteration {embed_step}\)\. '
            rf'Fix: lower optim_wrapper\.optimizer\.lr .*then --resume {ckpt}\.')


# Divergence with NonFiniteLossHook in the config: where the rows break, what
# the run was configured to save, and what must be left.
CASES = {
    # inf rows at a checkpoint step, keeping one checkpoint: iter_2 must survive.
    'inf rows at checkpoint step, keep 1': dict(
        config=dict(max_iters=6, ckpt_interval=2, keep=1, embed_interval=2,
                    extra_hooks=(inject_inf(4),)),
        problem=r'became inf in the update of iteration 4, though its loss was finite',
        kept_ckpts=[2], kept_embeds=2),
    'nan rows at checkpoint step, keep 2': dict(
        config=dict(max_iters=8, ckpt_interval=2, keep=2, embed_interval=2,
                    extra_hooks=(inject_inf(6, 'nan'),)),
        problem=r'became nan in the update of iteration 6',
        kept_ckpts=[2, 4], kept_embeds=4),
    # Snapshot at 6, checkpoints at 4 and 8: the rows break between them.
    'inf rows at snapshot step': dict(
        config=dict(max_iters=8, ckpt_interval=4, keep=1, embed_interval=3,
                    extra_hooks=(inject_inf(6),)),
        problem=r'became inf in the update of iteration 6',
        kept_ckpts=[4], kept_embeds=3),
    # The last step: neither iter_4.pth nor the final learned_embeds.safetensors.
    'inf rows at the final step': dict(
        config=dict(max_iters=4, ckpt_interval=2, keep=1, embed_interval=2,
                    extra_hooks=(inject_inf(4),)),
        problem=r'became inf in the update of iteration 4',
        kept_ckpts=[2], kept_embeds=2),
    # A real divergence: the lr jumps to 1e37 for step 5; the rows stay finite
    # (about 1e37) but step 6's loss is NaN, found at the checkpoint of step 6.
    'nan loss (exploding lr)': dict(
        config=dict(max_iters=8, ckpt_interval=2, keep=1, embed_interval=2,
                    scheduler="dict(_delete_=True, type='StepLR', step_size=4, gamma=2e40, "
                              'by_epoch=False)'),
        problem=r'^tools/train.py: error: Loss is nan at iteration 6; training stopped',
        kept_ckpts=[4], kept_embeds=4),
}


@pytest.mark.parametrize('case', list(CASES))
def test_divergence_keeps_the_last_finite_files_and_names_them(case, tmp_path, capsys):
    spec = CASES[case]
    work_dir = prepare_work_dir(tmp_path)
    before = snapshot(work_dir)
    code, err = train(capsys, write_config(tmp_path, **spec['config']), work_dir)

    line = assert_refused(code, err, PROG, spec['problem'], status=STATUS)
    assert re.search(kept_pattern(work_dir, spec['kept_ckpts'][-1], spec['kept_embeds']), line), line
    assert_kept(before, work_dir)
    assert_checkpoints(work_dir, spec['kept_ckpts'])
    snapshots = sorted(int(re.search(r'steps-(\d+)', p.name).group(1))
                       for p in work_dir.glob('learned_embeds-steps-*.safetensors'))
    assert snapshots[-1] == spec['kept_embeds']
    for step in snapshots:
        rows = load_file(work_dir / f'learned_embeds-steps-{step}.safetensors')['<cat-toy>']
        assert torch.isfinite(rows).all()
    assert not (work_dir / 'learned_embeds.safetensors').exists()  # never written from bad rows


@pytest.mark.parametrize('where, embed_interval, problem', [
    # The checkpoint hook's own check (no snapshot due at 4).
    ('checkpoint', 3, r'Not saving iteration 4: token_embedding\.rows\.0 hold NaN or inf'),
    # EmbeddingSaveHook's own check: it runs before the checkpoint hook.
    ('snapshot', 2, r'Not saving learned_embeds-steps-4\.safetensors: the learned rows of '
                    r'iteration 4 hold NaN or inf'),
])
def test_saving_hooks_refuse_non_finite_rows_without_the_guard_hook(
        where, embed_interval, problem, tmp_path, capsys):
    """Without NonFiniteLossHook in default_hooks the savers still never write inf rows."""
    work_dir = prepare_work_dir(tmp_path)
    before = snapshot(work_dir)
    config = write_config(tmp_path, max_iters=6, ckpt_interval=2, keep=1,
                          embed_interval=embed_interval, guard=False,
                          extra_hooks=(inject_inf(4),))
    code, err = train(capsys, config, work_dir)
    line = assert_refused(code, err, PROG, problem, status=STATUS)
    embed_step = 2 if embed_interval == 2 else 3
    assert re.search(kept_pattern(work_dir, 2, embed_step), line), line
    assert 'FloatingPointError' not in err
    assert_kept(before, work_dir)
    assert_checkpoints(work_dir, [2])


def test_learning_rate_beyond_float32_is_one_line(tmp_path, capsys):
    """torch refuses the update outright (RuntimeError) instead of producing inf."""
    work_dir = prepare_work_dir(tmp_path)
    before = snapshot(work_dir)
    config = write_config(tmp_path, max_iters=4, ckpt_interval=2, keep=1, embed_interval=2)
    code, err = train(capsys, config, work_dir, options=('optim_wrapper.optimizer.lr=1e39',))
    assert_refused(code, err, PROG, r'The update of iteration 1 overflows float32 \(learning rate '
                   r'1e\+39\).*Kept: no checkpoint yet\. Fix: lower optim_wrapper\.optimizer\.lr',
                   status=STATUS)
    assert_kept(before, work_dir)
    assert not list(work_dir.glob('iter_*')) and not list(work_dir.glob('*-steps-*'))


def test_resume_after_divergence_uses_the_kept_checkpoint(tmp_path, capsys):
    work_dir = prepare_work_dir(tmp_path)
    diverging = write_config(tmp_path, max_iters=6, ckpt_interval=2, keep=1, embed_interval=2,
                             extra_hooks=(inject_inf(4),))
    code, err = train(capsys, diverging, work_dir)
    first = assert_refused(code, err, PROG, r'iteration 4', status=STATUS)

    # --resume as the message says, changing nothing: it loads iter_2.pth (not
    # a broken iter_4.pth), diverges at the same step and says the same.
    before = kept_files(work_dir)
    code, err = train(capsys, diverging, work_dir, '--resume')
    again = assert_refused(code, err, PROG, r'iteration 4', status=STATUS)
    assert again == first
    assert_kept(before, work_dir)
    assert_checkpoints(work_dir, [2])

    # The fix: a lower learning rate, then --resume PATH from the message.
    path = re.search(r'--resume (\S+?)\.(?: |$)', first).group(1)
    assert path == str(work_dir / 'iter_2.pth')
    # Replaced by design: the rotated-out iter_2.pth, the pointer, the final file, the curves.
    before = kept_files(work_dir, 'iter_2.pth', 'last_checkpoint', 'learned_embeds.safetensors',
                        'curves.png')
    healthy = write_config(tmp_path, max_iters=6, ckpt_interval=2, keep=1, embed_interval=2)
    code, err = train(capsys, healthy, work_dir, '--resume', path,
                      options=('optim_wrapper.optimizer.lr=0.0001',))
    assert code in (0, None), err[-3000:]
    assert_kept(before, work_dir)
    assert_checkpoints(work_dir, [6])  # iter_2 went only once iter_4 and iter_6 were whole
    final = torch.load(work_dir / 'iter_6.pth', weights_only=True)
    # The config's lower learning rate was used, not the checkpoint's.
    assert [g['lr'] for g in final['optimizer']['param_groups']] == [pytest.approx(1e-4)]
    rows = load_file(work_dir / 'learned_embeds.safetensors')['<cat-toy>']
    assert torch.isfinite(rows).all()
    assert torch.equal(rows, final['state_dict']['token_embedding.rows.0'])


@pytest.mark.slow
def test_sigkill_during_a_save_leaves_whole_files_and_resume_cleans_up(tmp_path):
    """A real process killed while iter_4.pth is being written."""
    work_dir = prepare_work_dir(tmp_path)
    marker = tmp_path / 'saving'
    stall = f"dict(type='StallCheckpointSave', step=4, marker={str(marker)!r})"
    config = write_config(tmp_path, max_iters=6, ckpt_interval=2, keep=1, embed_interval=2,
                          extra_hooks=(stall,))
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([HOOKS_DIR, os.environ.get('PYTHONPATH', '')]))
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir)]
    before = snapshot(work_dir)
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.stderr.read()[-3000:] if proc.poll() is not None else 'timeout'
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert_kept(before, work_dir)
    # The checkpoint being written exists only under a temporary name.
    # (.train.lock stays after a SIGKILL; it does not block the next run.)
    temps = [p.name for p in work_dir.iterdir() if p.name.startswith('.') and p.name != '.train.lock']
    assert len(temps) == 1 and re.fullmatch(rf'\.iter_4\.pth\.{proc.pid}\.\w+\.tmp', temps[0]), temps
    assert sorted(p.name for p in work_dir.glob('iter_*.pth')) == ['iter_2.pth']
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'iter_2.pth')
    assert torch.load(work_dir / 'iter_2.pth', weights_only=True)['meta']['iter'] == 2

    # Replaced by design: the stale temp file and lock, the rotated-out
    # iter_2.pth, the pointer, the final file and the curves (redrawn). The step-4 snapshot the
    # killed run wrote before the checkpoint is written again, byte for byte.
    snapshot_4 = load_file(work_dir / 'learned_embeds-steps-4.safetensors')['<cat-toy>']
    before = kept_files(work_dir, temps[0], '.train.lock', 'iter_2.pth', 'last_checkpoint',
                        'learned_embeds.safetensors', 'curves.png')
    result = subprocess.run([*cmd, '--resume'], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'Removed {temps[0]}, left by a killed run.' in result.stdout + result.stderr
    assert_kept(before, work_dir)
    assert_checkpoints(work_dir, [6])
    assert torch.equal(load_file(work_dir / 'learned_embeds-steps-4.safetensors')['<cat-toy>'],
                       snapshot_4)
