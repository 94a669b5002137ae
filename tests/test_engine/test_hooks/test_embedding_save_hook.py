"""EmbeddingSaveHook in a real run: snapshots at multiples of the interval, final rows last."""
import torch
from mmti_testing import build_tiny_model
from safetensors import safe_open
from safetensors.torch import load_file

from mmti.engine import EmbeddingSaveHook
from mmti.fileio import read_embedding_file


def test_snapshots_exactly_at_multiples_of_interval(shared_run):
    assert shared_run.settings['embedding_interval'] == 2
    assert shared_run.settings['max_iters'] == 5
    names = sorted(p.name for p in shared_run.work_dir.glob('learned_embeds*'))
    assert names == ['learned_embeds-steps-2.safetensors', 'learned_embeds-steps-4.safetensors',
                     'learned_embeds.safetensors']


def test_snapshot_holds_the_rows_of_its_step(shared_run):
    rows = shared_run.recorder.rows
    for step in (2, 4):
        path = shared_run.work_dir / f'learned_embeds-steps-{step}.safetensors'
        saved = load_file(path)
        assert list(saved) == ['<cat-toy>']
        assert saved['<cat-toy>'].dtype == torch.float32 and saved['<cat-toy>'].shape == (1, 32)
        assert torch.equal(saved['<cat-toy>'], rows[step])
        with safe_open(str(path), 'pt') as f:
            assert f.metadata()['step'] == str(step)
    # Training did move the rows between the snapshots.
    assert not torch.equal(rows[2], rows[4])


def test_final_file_equals_the_models_current_rows(shared_run):
    path = shared_run.work_dir / 'learned_embeds.safetensors'
    current = shared_run.model.token_embedding.concept_rows('<cat-toy>').detach()
    assert torch.equal(load_file(path)['<cat-toy>'], current)
    assert torch.equal(current, shared_run.recorder.rows[5])
    assert torch.equal(read_embedding_file(path).embeddings['<cat-toy>'], current)
    with safe_open(str(path), 'pt') as f:
        metadata = f.metadata()
    assert metadata['step'] == '5'
    assert metadata['num_vectors'] == '1' and metadata['format'] == 'diffusers'
    assert metadata['base_model'] == shared_run.runner.cfg.model.pretrained_model


def test_final_file_loads_into_a_fresh_model(shared_run):
    fresh = build_tiny_model(pretrained_model=shared_run.runner.cfg.model.pretrained_model)
    assert fresh.load_embeddings(str(shared_run.work_dir)) == ['<cat-toy>']
    assert torch.equal(fresh.token_embedding.concept_rows('<cat-toy>').detach(),
                       shared_run.recorder.rows[5])


def test_interval_zero_and_custom_filename(shared_run, tmp_path, monkeypatch):
    runner = shared_run.runner
    monkeypatch.setattr(runner, '_work_dir', str(tmp_path))
    hook = EmbeddingSaveHook(interval=0, filename='concept.safetensors')
    for batch_idx in range(3):
        hook.after_train_iter(runner, batch_idx)
    assert list(tmp_path.iterdir()) == []
    hook.after_train(runner)
    assert [p.name for p in tmp_path.iterdir()] == ['concept.safetensors']
    # runner.iter is 5 after the run: the next step would be 6, a multiple of 3 and of 2.
    EmbeddingSaveHook(interval=3, filename='concept.safetensors').after_train_iter(runner, 0)
    EmbeddingSaveHook(interval=4, filename='concept.safetensors').after_train_iter(runner, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['concept-steps-6.safetensors',
                                                          'concept.safetensors']
    with safe_open(str(tmp_path / 'concept-steps-6.safetensors'), 'pt') as f:
        assert f.metadata()['step'] == '6'
