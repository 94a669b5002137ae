"""Bad config or data: tools/train.py stops with one clear message, writes nothing."""
import pytest
from PIL import Image
from fault_matrix import assert_refused
from tool_runner import TINY_CONFIG, load_tool, run_tool


def make_folder(tmp_path, kind: str) -> str:
    folder = tmp_path / 'concept'
    folder.mkdir()
    if kind == 'no-images':
        (folder / 'notes.txt').write_text('hello')
        (folder / 'model.ckpt').write_bytes(b'x')
    elif kind == 'unreadable':
        Image.new('RGB', (32, 32), 'red').save(folder / 'good.png')
        (folder / 'broken.jpg').write_bytes(b'not a jpeg at all')
    return str(folder)


CASES = {
    'missing folder': (lambda t: [f'train_dataloader.dataset.data_root={t}/nowhere'],
                       'Concept folder .*nowhere does not exist'),
    'empty folder': (lambda t: [f'train_dataloader.dataset.data_root={make_folder(t, "empty")}'],
                     r"has no images .*found: nothing"),
    'no images': (lambda t: [f'train_dataloader.dataset.data_root={make_folder(t, "no-images")}'],
                  r"has no images .*found: \['model.ckpt', 'notes.txt'\]"),
    'unreadable image': (
        lambda t: [f'train_dataloader.dataset.data_root={make_folder(t, "unreadable")}'],
        r'Cannot read image .*broken.jpg'),
    'template without {}': (lambda t: ['train_dataloader.dataset.templates=[a photo of it]'],
                            r'without "\{\}"'),
    'placeholder in vocabulary': (lambda t: ['model.placeholder_token=toy'],
                                  'already in the tokenizer vocabulary'),
    'multi-token initializer': (lambda t: ['model.initializer_token=cat-toy'],
                                r"must be exactly one token, but the tokenizer splits it into 3"),
    'num_vectors < 1': (lambda t: ['model.num_vectors=0'], 'num_vectors must be >= 1, got 0'),
    'unknown scheduler': (lambda t: ['model.inference_scheduler=FancyScheduler'],
                          "Unknown scheduler 'FancyScheduler'"),
}


@pytest.mark.parametrize('case', list(CASES))
def test_bad_input_gives_one_clear_error_and_writes_nothing(case, tmp_path, capsys):
    options, message = CASES[case]
    work_dir = tmp_path / 'work'
    train = load_tool('train')
    with pytest.raises(SystemExit) as exit_info:
        train.cli([TINY_CONFIG, '--work-dir', str(work_dir), '--cfg-options', *options(tmp_path)])
    assert_refused(exit_info.value.code, capsys.readouterr().err, 'tools/train.py', message)
    assert not work_dir.exists()


def test_existing_work_dir_files_are_untouched_on_bad_input(tmp_path):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    # Not a run's output (those are refused before any check: see test_train_matrix.py).
    (work_dir / 'notes.safetensors').write_bytes(b'previous result')
    result = run_tool('tools/train.py', TINY_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
                      'model.initializer_token=cat-toy', check=False)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith('tools/train.py: error: initializer_token')
    assert 'Traceback' not in result.stderr
    assert sorted(p.name for p in work_dir.iterdir()) == ['notes.safetensors']
    assert (work_dir / 'notes.safetensors').read_bytes() == b'previous result'


def test_non_writable_work_dir(tmp_path, monkeypatch, capsys):
    import os

    import mmti.engine.runner_builder as runner_builder
    locked = tmp_path / 'locked'
    locked.mkdir()
    locked.chmod(0o500)
    # Root ignores permission bits, so ask the same question os.access would
    # answer for an ordinary user.
    real_access = os.access
    monkeypatch.setattr(runner_builder.os, 'access',
                        lambda path, mode: False if str(path) == str(locked) else real_access(path, mode))
    train = load_tool('train')
    with pytest.raises(SystemExit) as exit_info:
        train.cli([TINY_CONFIG, '--work-dir', str(locked / 'run')])
    assert_refused(exit_info.value.code, capsys.readouterr().err, 'tools/train.py',
                   r'locked/run is not writable .*pass --work-dir')
    assert not (locked / 'run').exists()


def test_work_dir_below_a_file(tmp_path, capsys):
    blocker = tmp_path / 'results.txt'
    blocker.write_text('keep me')
    train = load_tool('train')
    with pytest.raises(SystemExit) as exit_info:
        train.cli([TINY_CONFIG, '--work-dir', str(blocker / 'run')])
    assert_refused(exit_info.value.code, capsys.readouterr().err, 'tools/train.py',
                   'is a file, not a folder')
    assert blocker.read_text() == 'keep me'


def test_nan_loss_stops_with_the_iteration_and_keeps_good_files(tmp_path):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    previous = work_dir / 'notes.txt'
    previous.write_bytes(b'kept by the failed run')
    # An absurd learning rate blows the rows up after one step; step 2's loss is NaN.
    result = run_tool('tools/train.py', TINY_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
                      'train_cfg.max_iters=6', 'optim_wrapper.optimizer.lr=1e37',
                      'default_hooks.embedding_save.interval=1', 'default_hooks.checkpoint.interval=1',
                      check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(
        'tools/train.py: error: Loss is nan at iteration 2')
    assert previous.read_bytes() == b'kept by the failed run'
    assert not (work_dir / 'learned_embeds.safetensors').exists()  # no final save of NaN rows
    import torch
    from safetensors.torch import load_file
    good = load_file(work_dir / 'learned_embeds-steps-1.safetensors')['<cat-toy>']
    assert torch.isfinite(good).all()
    assert not (work_dir / 'learned_embeds-steps-2.safetensors').exists()
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('iter_1.pth')


def test_corrupt_checkpoint_on_resume_is_named(tmp_path, capsys):
    work_dir = tmp_path / 'work'
    run_tool('tools/train.py', TINY_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
             'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=1')
    latest = work_dir / 'iter_2.pth'
    latest.write_bytes(latest.read_bytes()[:500])  # e.g. a disk that filled up
    before = sorted(p.name for p in work_dir.iterdir())
    train = load_tool('train')
    with pytest.raises(SystemExit) as exit_info:
        train.cli([TINY_CONFIG, '--work-dir', str(work_dir), '--resume'])
    assert_refused(exit_info.value.code, capsys.readouterr().err, 'tools/train.py',
                   r'Cannot resume from .*iter_2.pth: the file is corrupt, truncated .*earlier '
                   r'iter_\*.pth')
    assert sorted(p.name for p in work_dir.iterdir()) == before


def test_nan_found_between_sync_points_still_names_its_iteration(tmp_path):
    """The NaN check reads the device only where files are written or logs printed."""
    work_dir = tmp_path / 'work'
    result = run_tool('tools/train.py', TINY_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
                      'train_cfg.max_iters=12', 'optim_wrapper.optimizer.lr=1e37',
                      'default_hooks.embedding_save.interval=5', 'default_hooks.checkpoint.interval=5',
                      'default_hooks.logger.interval=5', check=False)
    assert result.returncode != 0
    assert 'Loss is nan at iteration 2;' in result.stderr
    assert not list(work_dir.glob('learned_embeds*')) and not list(work_dir.glob('iter_*.pth'))
