"""tools/test.py: the paper's evaluation through mmengine's runner (runner.test())."""
import json

import pytest
from tool_runner import TINY_CONFIG, assert_quiet, concept_folder_lines, run_tool

TOY_CONFIG = 'configs/textual_inversion_toy.py'
FEW = ['evaluation.num_samples=1', 'evaluation.steps=2']


@pytest.fixture(scope='module')
def toy_run(tmp_path_factory):
    """A 2-step run of the toy config: its checkpoint and embedding file."""
    work_dir = tmp_path_factory.mktemp('train')
    run_tool('tools/train.py', TOY_CONFIG, '--work-dir', str(work_dir), '--cfg-options',
             'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2',
             'default_hooks.validation_samples=None')
    return work_dir


@pytest.mark.slow
def test_test_py_gives_evaluate_py_numbers(toy_run, tmp_path):
    embeds = str(toy_run / 'learned_embeds.safetensors')
    run_tool('tools/evaluate.py', TOY_CONFIG, '--embeddings', embeds, '--num-samples', '1',
             '--steps', '2', '--seed', '3', '--out-dir', str(tmp_path / 'eval'))
    reference = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
    results = {}
    for name, checkpoint in (('embeds', embeds), ('iter', str(toy_run / 'iter_2.pth'))):
        out = tmp_path / name
        result = run_tool('tools/test.py', TOY_CONFIG, checkpoint, '--work-dir', str(out),
                          '--seed', '3', '--cfg-options', *FEW)
        results[name] = json.loads((out / 'metrics.json').read_text())['metrics']
        assert 'image_similarity: ' in result.stdout and 'verdict: ' in result.stdout
        assert_quiet(result)
        # One bar over the renders: (8 held-out captions + 4 edits) x (learned, initializer).
        assert 'test: sampling' in result.stderr and '24/24' in result.stderr
        folders = concept_folder_lines(result)  # each folder named once
        assert len(folders) == 2 and len(set(folders)) == 2, folders
        # mmengine logged the metrics in the work dir too
        logs = list(out.glob('*/*.log'))
        assert logs and 'image_similarity' in logs[0].read_text()
        assert not list(out.glob('.*.tmp'))
    metrics = results['embeds']
    assert set(metrics) == {'image_similarity', 'text_similarity',
                            'initializer/image_similarity', 'initializer/text_similarity',
                            'image_only/image_similarity', 'image_only/text_similarity',
                            'verdict'}
    rows = reference['rows']
    # One protocol: the same numbers as tools/evaluate.py for the same settings and seed.
    assert metrics['image_similarity'] == rows['learned']['image_similarity']
    assert metrics['text_similarity'] == rows['learned']['text_similarity']
    assert metrics['initializer/image_similarity'] == rows['initializer']['image_similarity']
    assert metrics['image_only/text_similarity'] == rows['image only']['text_similarity']
    assert metrics['verdict'] == reference['verdict']
    # The training checkpoint (runner's load_from) holds the same rows as the embedding file.
    assert results['iter'] == metrics


def test_test_py_without_evaluation_settings_is_one_line(tmp_path):
    embeds = tmp_path / 'learned_embeds.safetensors'
    embeds.write_bytes(b'')
    result = run_tool('tools/test.py', TINY_CONFIG, str(embeds), '--work-dir', str(tmp_path / 'w'),
                      check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count('\n') == 0
    assert 'has no evaluation settings' in result.stderr
    assert not (tmp_path / 'w').exists()


def test_test_py_missing_checkpoint_is_one_line(tmp_path):
    result = run_tool('tools/test.py', TOY_CONFIG, str(tmp_path / 'iter_9.pth'), check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count('\n') == 0 and 'does not exist' in result.stderr
