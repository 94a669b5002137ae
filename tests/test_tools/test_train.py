"""tools/train.py and tools/dist_train.sh as subprocesses on the tiny config."""
import pytest
import torch
from safetensors.torch import load_file
from tool_runner import TINY_CONFIG, run_tool

from PIL import Image


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
def six_step_run(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('run6')
    train(work_dir)
    return work_dir


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
    assert grid.size == (64, 4 * 64)  # four validation prompts, one image each


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
