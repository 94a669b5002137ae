"""tools/train.py and tools/dist_train.sh as subprocesses on the tiny config."""
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tool_runner import TINY_CONFIG, assert_quiet, run_tool

from PIL import Image

from mmti.engine.hooks.validation_sample_hook import LABEL_HEIGHT, MIN_CELL


def train(work_dir, *options, resume=None, procs: int = 0):
    args = ['train_cfg.max_iters=6', 'default_hooks.checkpoint.interval=3',
            'default_hooks.embedding_save.interval=3', 'default_hooks.validation_samples.interval=6',
            'model.validation_cfg.num_inference_steps=2', *options]
    resume_args = [] if resume is None else (['--resume'] if resume == 'auto' else ['--resume', resume])
    if procs:
        return run_tool('bash', 'tools/dist_train.sh', TINY_CONFIG, str(procs), '--work-dir',
                        str(work_dir), *resume_args, '--cfg-options', *args)
    return run_tool('tools/train.py', TINY_CONFIG, '--work-dir', str(work_dir), *resume_args,
                    '--cfg-options', *args)


@pytest.fixture(scope='module')
def six_step_result(tmp_path_factory):
    """(work dir, the finished process: its console output)."""
    work_dir = tmp_path_factory.mktemp('run6')
    return work_dir, train(work_dir)


@pytest.fixture(scope='module')
def six_step_run(six_step_result):
    return six_step_result[0]


def test_console_shows_progress_and_no_noise(six_step_result):
    work_dir, result = six_step_result
    assert_quiet(result)
    # Not a terminal (captured): a compact progress line every 10 % instead of a bar.
    progress = [line for line in result.stderr.splitlines() if line.startswith('train: ')]
    assert progress[-1].startswith('train: 100% (6/6 steps)') and 'ETA' in progress[-1]
    assert len(progress) <= 10
    (log_file,) = work_dir.glob('*/*.log')
    log = log_file.read_text()
    assert 'Hooks will be executed in the following order' in log
    assert '"FileClient" will be deprecated' in log
    if not torch.cuda.is_available():  # a CPU run does not claim a GPU
        assert 'GPU number' not in log and "'nccl'" not in log
        assert 'CPU processes: 1 (no GPU)' in log and "'backend': 'gloo'" in log


def test_the_last_validation_grid_is_drawn_once(six_step_result):
    # max_iters=6 with validation interval 6: the interval and the end of training meet.
    _, result = six_step_result
    console = result.stdout + result.stderr
    assert console.count('Saved validation samples') == 1, console


def test_resume_with_nothing_to_resume_is_a_quiet_fresh_run(tmp_path):
    # The demo passes --resume on its first run too: a fresh work dir is simply a new run.
    work_dir = tmp_path / 'fresh'
    result = train(work_dir, 'train_cfg.max_iters=2', 'default_hooks.validation_samples=None',
                   resume='auto')
    assert_quiet(result)
    assert 'Done: 2 steps in ' in result.stdout and 'resumed at step' not in result.stdout
    assert (work_dir / 'learned_embeds.safetensors').is_file()
    (log_file,) = work_dir.glob('*/*.log')
    assert 'Did not find last_checkpoint' not in log_file.read_text()


def test_summary_names_existing_files(six_step_result):
    work_dir, result = six_step_result
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('Done: 6 steps in '))
    summary = {key.strip(): value.strip() for key, value in
               (line.split(': ', 1) for line in lines[start + 1:start + 5])}
    assert summary['embedding'] == str(work_dir / 'learned_embeds.safetensors')
    assert summary['samples'] == str(work_dir / 'samples' / 'step_6.png')
    assert summary['curves'] == str(work_dir / 'curves.png')
    assert all(Path(path).is_file() for path in summary.values())
    assert (f"pipe.load_textual_inversion('{work_dir / 'learned_embeds.safetensors'}')"
            in lines[start + 5])
    assert 'embeddings/cat-toy.safetensors' in lines[start + 6]
    curves = Image.open(work_dir / 'curves.png')
    assert curves.format == 'PNG' and curves.width >= 600 and curves.height >= 200


def test_train_writes_embeddings_checkpoints_and_samples(six_step_run):
    work_dir = six_step_run
    final = load_file(work_dir / 'learned_embeds.safetensors')
    step3 = load_file(work_dir / 'learned_embeds-steps-3.safetensors')
    step6 = load_file(work_dir / 'learned_embeds-steps-6.safetensors')
    assert list(final) == ['<cat-toy>'] and final['<cat-toy>'].shape == (1, 32)
    assert torch.equal(final['<cat-toy>'], step6['<cat-toy>'])
    assert not torch.equal(step3['<cat-toy>'], step6['<cat-toy>'])

    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('iter_6.pth')
    for name in ('iter_3.pth', 'iter_6.pth'):
        path = work_dir / name
        assert path.stat().st_size < 200_000  # KB, not the GB of a frozen SD model
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
        assert list(checkpoint['state_dict']) == ['token_embedding.rows.0']
        assert len(checkpoint['optimizer']['state']) == 1
    assert not list(work_dir.glob('.*'))  # no temporary files left behind

    grid = Image.open(work_dir / 'samples' / 'step_6.png')
    # Four validation prompts, one image each (64 px enlarged to at least MIN_CELL), each row
    # with its prompt above it and the step above all.
    cell = 64 * math.ceil(MIN_CELL / 64)
    assert grid.height == LABEL_HEIGHT + 4 * (LABEL_HEIGHT + cell) and grid.width >= cell


@pytest.mark.slow
def test_resume_continues_exactly(six_step_run, tmp_path):
    straight = tmp_path / 'straight'
    train(straight, 'train_cfg.max_iters=9')
    resumed = tmp_path / 'resumed'
    resumed.mkdir()
    # --resume PATH: continue from step 3 of the six-step run to step 9.
    train(resumed, 'train_cfg.max_iters=9', resume=str(six_step_run / 'iter_3.pth'))
    expected = load_file(straight / 'learned_embeds.safetensors')['<cat-toy>']
    assert torch.equal(load_file(resumed / 'learned_embeds.safetensors')['<cat-toy>'], expected)
    # --resume (auto): continue the resumed run's own latest checkpoint.
    train(resumed, 'train_cfg.max_iters=9', resume='auto')
    assert torch.equal(load_file(resumed / 'learned_embeds.safetensors')['<cat-toy>'], expected)


@pytest.mark.slow
def test_dist_train_two_cpu_processes_match_one_process(tmp_path):
    one = tmp_path / 'one'
    train(one, 'train_cfg.max_iters=4', 'train_dataloader.batch_size=4')
    two = tmp_path / 'two'
    train(two, 'train_cfg.max_iters=4', 'train_dataloader.batch_size=2', procs=2)
    assert (two / 'learned_embeds.safetensors').is_file()
    a = load_file(one / 'learned_embeds.safetensors')['<cat-toy>']
    b = load_file(two / 'learned_embeds.safetensors')['<cat-toy>']
    assert not torch.equal(a, load_file(one / 'learned_embeds-steps-3.safetensors')['<cat-toy>'])
    assert torch.allclose(a, b, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_dist_train_runs_the_tiny_sdxl_config_on_two_cpu_processes(tmp_path):
    config = TINY_CONFIG.replace('textual_inversion_tiny.py', 'textual_inversion_sdxl_tiny.py')
    work_dir = tmp_path / 'sdxl'
    run_tool('bash', 'tools/dist_train.sh', config, '2', '--work-dir', str(work_dir),
             '--cfg-options', 'train_cfg.max_iters=3', 'train_dataloader.batch_size=2',
             'default_hooks.embedding_save.interval=3', 'default_hooks.validation_samples.interval=0',
             'model.validation_cfg.num_inference_steps=2')
    saved = load_file(work_dir / 'learned_embeds.safetensors')
    assert sorted(saved) == ['clip_g', 'clip_l']
    assert saved['clip_l'].shape == (1, 32) and saved['clip_g'].shape == (1, 64)
    checkpoint = torch.load(work_dir / 'iter_3.pth', map_location='cpu', weights_only=True)
    assert list(checkpoint['state_dict']) == ['token_embedding.rows.0', 'token_embedding_2.rows.0']
    assert (work_dir / 'samples' / 'step_3.png').is_file()


def test_changing_only_the_model_token_trains_that_token(tmp_path):
    # The token is declared once: captions and validation prompts follow it.
    train(tmp_path, 'model.placeholder_token=<my-dog>')
    step3 = load_file(tmp_path / 'learned_embeds-steps-3.safetensors')
    final = load_file(tmp_path / 'learned_embeds.safetensors')
    assert list(final) == ['<my-dog>']
    assert not torch.equal(step3['<my-dog>'], final['<my-dog>'])  # the rows did train


@pytest.mark.parametrize('token, name', [
    ('<cat-toy>', 'cat-toy.safetensors'),
    ('<cat (toy)>', 'cattoy.safetensors'),  # A1111 reads ( ) as emphasis, [ ] as less
    ('[x]{y},z:w', 'xyzw.safetensors'),  # ... { } (extensions), ',' and ':' as syntax too
    ('<>', 'my-concept.safetensors'),
    ('<.hidden>', 'hidden.safetensors'),  # not a hidden file
    ('<con>', 'con-concept.safetensors'),  # a name Windows reserves
    ('<AND>', 'AND-concept.safetensors'),  # A1111's prompt keywords
    ('BREAK', 'BREAK-concept.safetensors'),
])
def test_the_a1111_hint_names_a_word_a1111_prompts_can_match(token, name):
    from mmti.cli.train import a1111_name
    assert a1111_name(token) == name
