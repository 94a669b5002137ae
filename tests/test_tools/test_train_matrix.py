"""Bad input and faults of tools/train.py and tools/dist_train.sh, one row each.

Every case asserts the exit status, a one-line message naming the problem,
and that every file already in the work dir is byte-identical afterwards.
Most run in-process through ``cli()`` (they fail before the model is built
or right after); signals, concurrent runs and the shell launcher run as real
subprocesses.
"""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

# Imported now so its one-time import warning is not printed into a case's stderr.
import diffusers.loaders.ip_adapter  # noqa: F401
import pytest
import torch
from fault_matrix import assert_kept, assert_refused, snapshot
from mmti_testing import REPO_ROOT
from safetensors.torch import save_file
from tool_runner import TINY_CONFIG, load_tool, run_tool

from mmti.utils import INTERRUPTED

PROG = 'tools/train.py'
# A short run: checkpoints and embeddings at steps 2 and 4, no sample renders.
SHORT = ['default_hooks.checkpoint.interval=2', 'default_hooks.embedding_save.interval=2',
         'default_hooks.validation_samples.interval=0', 'default_hooks.logger.interval=1']


def work_dir_with_notes(tmp_path) -> Path:
    """A work dir that already holds a file which is not a run's output."""
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / 'notes.txt').write_text('my notes about this run\n')
    return work_dir


def cli(argv, capsys) -> tuple[int, str]:
    """``tools/train.py`` in-process: (exit status, stderr)."""
    train = load_tool('train')
    try:
        train.cli([str(a) for a in argv])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def refused(argv, pattern, capsys, work_dir, status=2):
    """Run, assert the refusal, and that the work dir did not change at all."""
    before = snapshot(work_dir)
    code, err = cli(argv, capsys)
    line = assert_refused(code, err, PROG, pattern, status)
    assert_kept(before, work_dir)
    assert snapshot(work_dir) == before, 'files were added'
    return line


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


# --------------------------------------------------------------- config and args
def _config(tmp_path, text: str | bytes) -> Path:
    return write(tmp_path / 'cfgs' / 'my_config.py', text)


CONFIG_CASES = {
    'missing config': (lambda t: [t / 'nowhere.py'], r'config .*nowhere\.py does not exist'),
    'config path typo': (lambda t: [TINY_CONFIG.replace('tiny.py', 'tiy.py')],
                         r'does not exist; did you mean .*textual_inversion_tiny\.py\?'),
    'config is a folder': (lambda t: [t], r'config .* is a folder'),
    'config syntax error': (lambda t: [_config(t, 'model = dict(\n')],
                            r'my_config\.py line 1: syntax error'),
    'config not UTF-8': (lambda t: [_config(t, b'x = "\xff\xfe"\n')],
                         r'my_config\.py is not UTF-8'),
    'config undefined name': (lambda t: [_config(t, 'model = dict(lr=learning_rate)\n')],
                              r"my_config\.py cannot be loaded: NameError: .*learning_rate"),
    'cfg-options word without =': (lambda t: [TINY_CONFIG, '--cfg-options', 'foo'],
                                   r"argument --cfg-options: 'foo' is not KEY=VALUE"),
    'batch size 0': (lambda t: [TINY_CONFIG, '--cfg-options', 'train_dataloader.batch_size=0'],
                     r'train_dataloader\.batch_size must be >= 1, got 0'),
    'batch size a string': (lambda t: [TINY_CONFIG, '--cfg-options', 'train_dataloader.batch_size=two'],
                            r"train_dataloader\.batch_size must be an integer, got 'two'"),
    'a file variable the config copied into fields': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'placeholder_token=<dog>'],
        r'--cfg-options placeholder_token: placeholder_token is a variable the config file uses '
        r'as it is read \(its value is in model\.placeholder_token\); an option on it changes '
        r'nothing\. Set model\.placeholder_token instead'),
    'unknown top-level option': (lambda t: [TINY_CONFIG, '--cfg-options', 'max_iters=5'],
                                 r"--cfg-options max_iters: the config has no field 'max_iters'"),
    'unknown loop field': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'train_cfg.max_iter=5'],
        r"train_cfg \(SeekingIterBasedTrainLoop\) has no field 'max_iter'; did you mean 'max_iters'"),
    'unknown model field': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'model.num_vector=2'],
        r"model \(TextualInversion\) has no field 'num_vector'; did you mean 'num_vectors'"),
    'unknown dataset field': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'train_dataloader.dataset.repeat=3'],
        r"train_dataloader\.dataset \(TextualInversionDataset\) has no field 'repeat'"),
    'unknown dataloader field': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'train_dataloader.batchsize=2'],
        r"train_dataloader has no field 'batchsize'; did you mean 'batch_size'"),
    'unknown hook field': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'default_hooks.checkpoint.intervall=2'],
        r"default_hooks\.checkpoint \(AtomicCheckpointHook\) has no field 'intervall'"),
    'misspelt hook name': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'default_hooks.embeding_save.interval=2'],
        r"default_hooks.*embeding_save.*did you mean 'embedding_save'"),
    'unknown hook type': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'default_hooks.embedding_save.type=EmbedingSaveHook'],
        r"default_hooks\.embedding_save\.type='EmbedingSaveHook' is not a registered hook; did you "
        r"mean 'EmbeddingSaveHook'"),
    'unknown optimizer type': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'optim_wrapper.optimizer.type=Adamw'],
        r"optim_wrapper\.optimizer\.type='Adamw' is not a registered optimizer; did you mean "
        r"'AdamW'"),
    'unknown field in the config file': (
        lambda t: [_config(t, f"_base_ = ['{TINY_CONFIG}']\nmodel = dict(num_vector=2)\n")],
        r'model\.num_vector is not a field of model \(TextualInversion\)'),
    'stop window shorter than the interval': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'default_hooks.learning_signal.stop.window=5'],
        r'default_hooks\.learning_signal\.stop\.window \(5\) is shorter than the interval '
        r'between measurements \(\d+\)'),
    'negative stop.min_move': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'default_hooks.learning_signal.stop.min_move=-1'],
        r'default_hooks\.learning_signal\.stop\.min_move must be a number >= 0'),
    'optimizer type changed, its settings kept': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'optim_wrapper.optimizer.type=SGD'],
        r'optim_wrapper\.optimizer \(SGD\) takes no betas, eps \(kept from the config the type '
        r"was changed in\?\)\. Replace the whole optimizer .*_delete_=True, type='SGD'"),
    'lr NaN': (lambda t: [TINY_CONFIG, '--cfg-options', 'optim_wrapper.optimizer.lr=nan'],
               r'optim_wrapper\.optimizer\.lr must be a finite number, got nan'),
    'lr negative': (lambda t: [TINY_CONFIG, '--cfg-options', 'optim_wrapper.optimizer.lr=-1e-3'],
                    r'optim_wrapper\.optimizer\.lr must be >= 0'),
    'max_iters 0': (lambda t: [TINY_CONFIG, '--cfg-options', 'train_cfg.max_iters=0'],
                    r'train_cfg\.max_iters must be >= 1, got 0'),
    'max_iters not a number': (lambda t: [TINY_CONFIG, '--cfg-options', 'train_cfg.max_iters=ten'],
                               r"train_cfg\.max_iters must be an integer, got 'ten'"),
    'num_vectors not an int': (lambda t: [TINY_CONFIG, '--cfg-options', 'model.num_vectors=1.5'],
                               r'model\.num_vectors must be an integer, got 1\.5'),
    'crop larger than resize': (
        lambda t: [_own_pipeline(t, "dict(type='ResizeShorterSide', size=64), "
                                    "dict(type='CenterCrop', size=96), dict(type='PackInputs')")],
        r'CenterCrop size 96 is larger than ResizeShorterSide size 64'),
    'resolution and a pipeline': (
        lambda t: [_own_pipeline(t, "dict(type='PackInputs')", resolution=64)],
        r'both resolution and pipeline; set one'),
    'resolution not a number': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'train_dataloader.dataset.resolution=big'],
        r"resolution must be a whole number of pixels >= 8, got 'big'"),
    'missing local pretrained_model': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'model.pretrained_model=./data/tiny-sdd'],
        r'model\.pretrained_model \./data/tiny-sdd is not a folder'),
    'uncached hub id offline': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'model.pretrained_model=nobody/no-such-model'],
        r'nobody/no-such-model is neither a local folder \(looked in .*\) nor in the Hugging Face cache'),
    'model and dataset tokens differ': (
        lambda t: [TINY_CONFIG, '--cfg-options',
                   'train_dataloader.dataset.placeholder_token=<dog>'],
        r"model\.placeholder_token='<cat-toy>' but train_dataloader\.dataset\.placeholder_token="
        r"'<dog>'"),
    'prompts without the token': (
        lambda t: [TINY_CONFIG, '--cfg-options', 'model.validation_prompts=[a dog,a cat]'],
        r"model\.validation_prompts never mention model\.placeholder_token='<cat-toy>'"),
    '--resume PATH missing': (lambda t: [TINY_CONFIG, '--resume', t / 'iter_9.pth'],
                              r'--resume: checkpoint .*iter_9\.pth does not exist'),
    '--launcher pytorch outside torchrun': (
        lambda t: [TINY_CONFIG, '--launcher', 'pytorch'],
        r'--launcher pytorch needs the environment torchrun sets \(RANK, WORLD_SIZE'),
}


@pytest.mark.parametrize('case', list(CONFIG_CASES))
def test_config_and_argument_mistakes(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    for name in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(name, raising=False)
    argv, pattern = CONFIG_CASES[case]
    work_dir = work_dir_with_notes(tmp_path)
    refused([*argv(tmp_path), '--work-dir', work_dir], pattern, capsys, work_dir)


# ----------------------------------------------------------------- data and model
def _own_pipeline(tmp_path, transforms: str, resolution=None) -> str:
    """A config of the user's own with an explicit pipeline instead of resolution."""
    path = tmp_path / 'own_pipeline.py'
    path.write_text(f"_base_ = [{TINY_CONFIG!r}]\n"
                    f"train_dataloader = dict(dataset=dict(resolution={resolution!r}, "
                    f"pipeline=[{transforms}]))\n")
    return str(path)


def _bad_safetensors(t: Path) -> str:
    path = t / 'init.safetensors'
    save_file({'<cat-toy>': torch.zeros(1, 32)}, str(path))
    path.write_bytes(path.read_bytes()[:-16])  # cut short, e.g. a failed download
    return str(path)


def _latin1_templates(t: Path) -> str:
    return str(write(t / 'templates.txt', 'une photo d\'un {} \xe9t\xe9\n'.encode('latin-1')))


def _wide_embedding(t: Path) -> str:
    path = t / 'wide.safetensors'
    save_file({'<w>': torch.zeros(1, 768)}, str(path))
    return str(path)


def _latin1_captions(t: Path) -> str:
    folder = t / 'concept'
    shutil.copytree(REPO_ROOT / 'data' / 'cat_toy', folder)
    for image in sorted(folder.iterdir()):
        write(image.with_suffix('.txt'), 'a {} on a sofa\n')
    write(sorted(folder.glob('*.txt'))[0], 'a {} caf\xe9\n'.encode('latin-1'))
    return str(folder)


DATA_CASES = {
    'corrupt initial_embedding': (
        lambda t: [f'model.initial_embedding={_bad_safetensors(t)}'],
        r'model\.initial_embedding.* .*init\.safetensors is a damaged or truncated safetensors file'),
    'initial_embedding for another model': (
        lambda t: [f'model.initial_embedding={_wide_embedding(t)}'],
        r"Rows for '<cat-toy>' \(text_encoder\) from initial_embedding .*wide\.safetensors have "
        r'shape \(1, 768\): dimension 768'),
    'placeholder that is a vocabulary word': (
        lambda t: ['model.placeholder_token=cat', 'train_dataloader.dataset.placeholder_token=cat'],
        r"\['cat'\] are already in the tokenizer vocabulary \(text_encoder, rows from the config\); "
        r'.*\(set the config.s placeholder_token\)'),
    'template file not UTF-8': (
        lambda t: [f'train_dataloader.dataset.templates={_latin1_templates(t)}'],
        r'train_dataloader\.dataset: a text file it reads is not UTF-8 .*re-save .*'
        r'templates\.txt as UTF-8'),
    'caption file not UTF-8': (
        lambda t: [f'train_dataloader.dataset.data_root={_latin1_captions(t)}',
                   'train_dataloader.dataset.caption_files=True'],
        r'not UTF-8 .*re-save .*concept/.*\.txt as UTF-8'),
    'num_vectors overflows the text encoder': (
        lambda t: ['model.num_vectors=80'],
        r"caption .* is \d+ tokens with the placeholder expanded to 80 vectors, but the text "
        r"encoder reads 77"),
}


@pytest.mark.parametrize('case', list(DATA_CASES))
def test_data_and_model_mistakes(case, tmp_path, capsys):
    options, pattern = DATA_CASES[case]
    work_dir = work_dir_with_notes(tmp_path)
    refused([TINY_CONFIG, '--work-dir', work_dir, '--cfg-options', *options(tmp_path)], pattern,
            capsys, work_dir)


# ------------------------------------------------------------- work dirs, resume
@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='needs Linux /proc')
def test_a_work_dir_the_file_system_cannot_hold_is_named(capsys):
    # /proc passes a permission check for root, yet nothing can be made there.
    code, err = cli([TINY_CONFIG, '--work-dir', '/proc/mmti-run'], capsys)
    assert_refused(code, err, PROG, r'Work dir /proc/mmti-run cannot be created in /proc '
                                    r'\(.*\); pass --work-dir with a folder you can write to')


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory) -> Path:
    """A finished four-step run (checkpoints and embeddings at 2 and 4)."""
    work_dir = tmp_path_factory.mktemp('finished') / 'run'
    run_tool(PROG, TINY_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
             'train_cfg.max_iters=4', *SHORT)
    assert (work_dir / 'iter_4.pth').is_file() and not (work_dir / '.train.lock').exists()
    return work_dir


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A private copy of the finished run (cases may not disturb each other)."""
    work_dir = tmp_path / 'copy'
    shutil.copytree(finished_run, work_dir)
    marker = work_dir / 'last_checkpoint'
    marker.write_text(str(work_dir / 'iter_4.pth'))  # as if it had run here
    return work_dir


def resume_args(work_dir, *options, max_iters=4):
    return [TINY_CONFIG, '--work-dir', work_dir, '--resume', '--cfg-options',
            f'train_cfg.max_iters={max_iters}', *SHORT, *options]


def test_finished_work_dir_without_resume_is_refused(run_copy, capsys):
    refused([TINY_CONFIG, '--work-dir', run_copy], r'work dir .*copy already holds a run '
            r'\(iter_2\.pth, iter_4\.pth, last_checkpoint, \.\.\.\); continue it with --resume, '
            r'pass another --work-dir, or delete it', capsys, run_copy)


def test_work_dir_with_only_embeddings_is_refused(tmp_path, capsys):
    work_dir = work_dir_with_notes(tmp_path)
    save_file({'<cat-toy>': torch.ones(1, 32)},
              str(work_dir / 'learned_embeds-steps-100.safetensors'))
    refused([TINY_CONFIG, '--work-dir', work_dir],
            r'already holds a run \(learned_embeds-steps-100\.safetensors\)', capsys, work_dir)


def test_resume_of_a_finished_run_does_nothing(run_copy, capsys):
    before = snapshot(run_copy)
    code, err = cli(resume_args(run_copy), capsys)
    assert code == 0, err
    assert err.strip().splitlines()[-1].startswith(
        f'{PROG}: nothing to resume: the run finished at step 4')
    assert snapshot(run_copy) == before  # the final save is not redone, no log folder


def test_resume_with_changed_num_vectors_is_refused(run_copy, capsys):
    refused(resume_args(run_copy, 'model.num_vectors=2', max_iters=8),
            r'Cannot resume from .*iter_4\.pth: it trained num_vectors=1 but the config has '
            r'model\.num_vectors=2', capsys, run_copy)


def test_resume_with_another_placeholder_is_refused(run_copy, capsys):
    refused(resume_args(run_copy, 'model.placeholder_token=<dog>', max_iters=8),
            r"it trained placeholder '<cat-toy>' but the config has model\.placeholder_token="
            r"'<dog>'", capsys, run_copy)


def test_resume_on_other_images_or_captions_is_refused(run_copy, tmp_path, capsys):
    fewer = tmp_path / 'fewer'
    shutil.copytree(REPO_ROOT / 'data' / 'cat_toy', fewer)
    sorted(fewer.iterdir())[0].unlink()
    refused(resume_args(run_copy, f'train_dataloader.dataset.data_root={fewer}', max_iters=8),
            r'Cannot resume from .*iter_4\.pth: the images differ from those it trained on '
            r'\(\d+ images in data/cat_toy, now \d+ in .*fewer\)', capsys, run_copy)
    refused(resume_args(run_copy, "train_dataloader.dataset.templates=['a photo of {}']",
                        max_iters=8),
            r'the captions differ from those it trained on', capsys, run_copy)


def test_resume_from_a_moved_copy_of_the_same_images_continues(run_copy, tmp_path, capsys):
    moved = tmp_path / 'moved'
    shutil.copytree(REPO_ROOT / 'data' / 'cat_toy', moved)
    code, err = cli(resume_args(run_copy, f'train_dataloader.dataset.data_root={moved}',
                                max_iters=6), capsys)
    assert code == 0, err
    assert (run_copy / 'iter_6.pth').is_file()


@pytest.mark.parametrize('content, pattern', [
    (b'\xff\xfe/iter_4.pth', r'last_checkpoint is not UTF-8 text'),
    (b'  \n', r'last_checkpoint is empty'),
    (b'/gone/iter_9.pth',
     r'Checkpoint /gone/iter_9\.pth \(from .*last_checkpoint\) does not exist'),
])
def test_bad_last_checkpoint_is_named(run_copy, capsys, content, pattern):
    (run_copy / 'last_checkpoint').write_bytes(content)
    refused(resume_args(run_copy, max_iters=8), pattern, capsys, run_copy)


def test_moved_work_dir_resumes_from_the_checkpoint_beside_it(finished_run, tmp_path):
    old = tmp_path / 'old'
    shutil.copytree(finished_run, old)
    (old / 'last_checkpoint').write_text(str(old / 'iter_4.pth'))  # as if it had run there
    moved = old.rename(tmp_path / 'moved')  # last_checkpoint still names the old folder
    before = snapshot(moved)
    result = run_tool(PROG, *map(str, resume_args(moved, max_iters=5)))
    assert f'resuming from {moved / "iter_4.pth"} beside it' in result.stdout + result.stderr
    assert (moved / 'last_checkpoint').read_text() == str(moved / 'iter_5.pth')
    # Resuming rewrites the final embedding, the marker, the curves (longer now)
    # and mmengine's dump of the config; every checkpoint, snapshot and log stays.
    rewritten = ('learned_embeds.safetensors', 'last_checkpoint', 'textual_inversion_tiny.py',
                 'curves.png')
    assert_kept({k: v for k, v in before.items() if k not in rewritten}, moved)


# --------------------------------------------------------- real processes
def start(work_dir, *options) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    cmd = [sys.executable, PROG, TINY_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
           'train_cfg.max_iters=100000', 'default_hooks.validation_samples.interval=0',
           'default_hooks.logger.interval=1', *options]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_line(proc, text: str, timeout=120.0) -> list[str]:
    """Read ``proc``'s output until a line contains ``text``."""
    lines, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    proc.kill()
    raise AssertionError(f'{text!r} never printed:\n{"".join(lines[-30:])}')


@pytest.mark.slow
def test_second_run_in_a_busy_work_dir_is_refused_and_a_stale_lock_does_not_block(tmp_path):
    work_dir = work_dir_with_notes(tmp_path)
    first = start(work_dir, 'default_hooks.checkpoint.interval=100000',
                  'default_hooks.embedding_save.interval=100000')
    try:
        wait_for_line(first, 'Iter(train)')  # training: the lock is held
        holder = (work_dir / '.train.lock').read_text().strip()
        assert holder == str(first.pid)
        first.send_signal(signal.SIGSTOP)  # still holds the lock; frees the CPU meanwhile
        before = snapshot(work_dir)
        second = run_tool(PROG, TINY_CONFIG, '--work-dir', str(work_dir), check=False)
        assert_refused(second.returncode, second.stderr, PROG,
                       rf'work dir .*work is in use by another training run \(pid {first.pid}\)')
        # The first run keeps logging; the second added nothing (no log folder
        # of its own) and left the lock and the notes as they were.
        assert_kept({name: before[name] for name in ('notes.txt', '.train.lock')}, work_dir)
        assert {p.name for p in work_dir.iterdir()} == {name.split('/')[0] for name in before}
    finally:
        first.kill()  # SIGKILL: no cleanup runs, the lock file stays behind
        first.communicate()
    assert (work_dir / '.train.lock').exists()
    third = run_tool(PROG, TINY_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
                     'train_cfg.max_iters=1', 'default_hooks.validation_samples.interval=0')
    assert third.returncode == 0 and (work_dir / 'learned_embeds.safetensors').is_file()
    assert not (work_dir / '.train.lock').exists()
    assert (work_dir / 'notes.txt').read_text() == 'my notes about this run\n'


def interrupt(proc) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def test_ctrl_c_names_the_kept_checkpoint_and_the_resume_command(tmp_path):
    work_dir = work_dir_with_notes(tmp_path)
    proc = start(work_dir, 'default_hooks.checkpoint.interval=2', 'default_hooks.embedding_save.interval=2')
    wait_for_line(proc, 'Saving checkpoint at 2 iterations')
    wait_for_line(proc, 'Iter(train)')  # the checkpoint landed; training goes on
    notes = snapshot(work_dir)['notes.txt']
    code, out = interrupt(proc)
    kept = (work_dir / 'last_checkpoint').read_text()
    line = assert_refused(code, out, PROG, r'interrupted; kept .*iter_\d+\.pth \(step \d+\)\. '
                          r'Continue with: python tools/train.py .* --resume$', INTERRUPTED)
    assert kept in line
    # What it names is whole (rotation and Ctrl-C may land anywhere in a save).
    checkpoint = torch.load(kept, map_location='cpu', weights_only=True)
    assert f'(step {checkpoint["meta"]["iter"]})' in line
    assert_kept({'notes.txt': notes}, work_dir)
    assert not (work_dir / '.train.lock').exists()
    # The printed command parses back to this run, resuming.
    args = load_tool('train').parse_args(shlex.split(line.split('Continue with: ')[1])[2:])
    assert args.resume == 'auto' and Path(args.work_dir) == work_dir
    assert args.cfg_options['default_hooks.checkpoint.interval'] == 2


def test_ctrl_c_of_dist_train_names_the_dist_train_command_and_exits_130(tmp_path):
    # Ctrl-C reaches the whole process group: the launcher and the rank.
    work_dir = tmp_path / 'work'
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1',
               PATH=f'{Path(sys.executable).parent}{os.pathsep}{os.environ["PATH"]}')
    proc = subprocess.Popen(
        ['bash', 'tools/dist_train.sh', TINY_CONFIG, '1', '--work-dir', str(work_dir),
         '--cfg-options', 'train_cfg.max_iters=100000', 'default_hooks.validation_samples.interval=0',
         'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=2'],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    wait_for_line(proc, 'Saving checkpoint at 2 iterations')
    wait_for_line(proc, 'Iter(train)')
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    line = assert_refused(proc.returncode, out, PROG, r'interrupted; kept .*iter_\d+\.pth',
                          INTERRUPTED)
    command = shlex.split(line.split('Continue with: ')[1])
    assert command[:4] == ['bash', 'tools/dist_train.sh', TINY_CONFIG, '1']
    assert '--launcher' not in command and command[-1] == '--resume'


def test_ctrl_c_before_the_first_checkpoint_says_nothing_is_kept(tmp_path):
    work_dir = work_dir_with_notes(tmp_path)
    proc = start(work_dir, 'default_hooks.checkpoint.interval=100000',
                 'default_hooks.embedding_save.interval=100000')
    wait_for_line(proc, 'Iter(train)')
    code, out = interrupt(proc)
    assert_refused(code, out, PROG, r'interrupted before the first checkpoint; nothing to resume '
                   r'in .*work', INTERRUPTED)
    assert (work_dir / 'notes.txt').read_text() == 'my notes about this run\n'
    assert not (work_dir / '.train.lock').exists()


LAUNCH_CASES = {
    'dist_train.sh 0 processes': (
        lambda w: ['bash', 'tools/dist_train.sh', TINY_CONFIG, '0', '--work-dir', w],
        'tools/dist_train.sh', r"NUM_PROCS must be a positive whole number .*got '0'"),
    'dist_train.sh non-numeric processes': (
        lambda w: ['bash', 'tools/dist_train.sh', TINY_CONFIG, 'two', '--work-dir', w],
        'tools/dist_train.sh', r"NUM_PROCS must be a positive whole number .*got 'two'"),
    'dist_train.sh missing config': (
        lambda w: ['bash', 'tools/dist_train.sh', 'configs/nope.py', '2', '--work-dir', w],
        'tools/dist_train.sh', r'config configs/nope\.py does not exist'),
    'dist_train.sh without NUM_PROCS': (
        lambda w: ['bash', 'tools/dist_train.sh', TINY_CONFIG], 'tools/dist_train.sh',
        r'expected CONFIG and NUM_PROCS'),
    'dist_train.sh, a config mistake on two ranks': (
        lambda w: ['bash', 'tools/dist_train.sh', TINY_CONFIG, '2', '--work-dir', w,
                   '--cfg-options', 'train_cfg.max_iter=3'],
        PROG, r"train_cfg \(SeekingIterBasedTrainLoop\) has no field 'max_iter'"),
    '--launcher pytorch without torchrun': (
        lambda w: [sys.executable, PROG, TINY_CONFIG, '--launcher', 'pytorch', '--work-dir', w],
        PROG, r'--launcher pytorch needs the environment torchrun sets'),
}


@pytest.mark.parametrize('case', list(LAUNCH_CASES))
def test_launchers_refuse_bad_process_setups(case, tmp_path):
    argv, prog, pattern = LAUNCH_CASES[case]
    work_dir = work_dir_with_notes(tmp_path)
    before = snapshot(work_dir)
    env = {k: v for k, v in os.environ.items()
           if k not in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')}
    result = subprocess.run(argv(str(work_dir)), cwd=REPO_ROOT, capture_output=True, text=True,
                            env=dict(env, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1'), timeout=120)
    assert_refused(result.returncode, result.stderr, prog, pattern)
    assert snapshot(work_dir) == before


def test_a_hub_id_without_network_fails_fast_with_the_download_command(tmp_path):
    # No HF_HUB_OFFLINE and an endpoint that refuses connections: huggingface_hub
    # alone would retry for minutes; mmti probes once and names the fix.
    work_dir = work_dir_with_notes(tmp_path)
    before = snapshot(work_dir)
    env = dict(os.environ, HF_HUB_OFFLINE='0', HF_ENDPOINT='http://127.0.0.1:9',
               HF_HOME=str(tmp_path / 'empty_hf_home'), OMP_NUM_THREADS='1')
    result = subprocess.run(
        [sys.executable, 'tools/train.py', 'configs/textual_inversion.py', '--work-dir',
         str(work_dir)], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert_refused(result.returncode, result.stderr, 'tools/train.py',
                   r'stable-diffusion-v1-5/stable-diffusion-v1-5 is not downloaded and the hub '
                   r'\(http://127\.0\.0\.1:9\) cannot be reached; download it once .*'
                   r'hf download')
    assert snapshot(work_dir) == before
