"""tools/infer.py: PNGs from a learned embedding, reproducible by seed."""
import numpy as np
import pytest
import torch
from mmti_testing import build_tiny_model
from PIL import Image
from tool_runner import TINY_CONFIG, load_tool, run_tool


@pytest.fixture(scope='module')
def embedding_file(tmp_path_factory):
    model = build_tiny_model()
    with torch.no_grad():
        model.token_embedding.concept_rows('<cat-toy>').normal_(generator=torch.Generator().manual_seed(0))
    return model.save_embeddings(str(tmp_path_factory.mktemp('emb') / 'learned_embeds.safetensors'))


def test_infer_cli_writes_requested_images(embedding_file, tmp_path):
    out = tmp_path / 'out'
    result = run_tool('tools/infer.py', TINY_CONFIG, '--embeddings', embedding_file,
                      '--prompt', 'a <cat-toy> bag', '--prompt', 'a <cat-toy> on a beach',
                      '--num-images', '2', '--steps', '3', '--seed', '1', '--width', '96',
                      '--out-dir', str(out))
    files = sorted(out.glob('*.png'))
    assert [f.name for f in files] == [
        'a_cat_toy_bag_seed1_0.png', 'a_cat_toy_bag_seed1_1.png',
        'a_cat_toy_on_a_beach_seed1_0.png', 'a_cat_toy_on_a_beach_seed1_1.png']
    assert all(Image.open(f).size == (96, 64) for f in files)
    assert all(str(f.relative_to(tmp_path)) in result.stdout for f in files) or 'Wrote' in result.stdout


def test_infer_is_reproducible_and_uses_the_embedding(embedding_file, tmp_path):
    infer = load_tool('infer')
    args = ['--prompt', 'a <cat-toy> bag', '--steps', '3', '--seed', '4']
    first = infer.main([TINY_CONFIG, '--embeddings', embedding_file, *args,
                        '--out-dir', str(tmp_path / 'a')])
    again = infer.main([TINY_CONFIG, '--embeddings', embedding_file, *args,
                        '--out-dir', str(tmp_path / 'b')])
    # The same prompt without the learned rows (a fresh embedding of "toy").
    fresh = build_tiny_model().save_embeddings(str(tmp_path / 'fresh.safetensors'))
    other = infer.main([TINY_CONFIG, '--embeddings', fresh, *args, '--out-dir', str(tmp_path / 'c')])
    pixels = [np.asarray(Image.open(p[0])) for p in (first, again, other)]
    assert np.array_equal(pixels[0], pixels[1])
    assert not np.array_equal(pixels[0], pixels[2])


def test_infer_rejects_an_embedding_for_another_model(tmp_path):
    from safetensors.torch import save_file
    wrong = tmp_path / 'sd2.safetensors'
    save_file({'<cat-toy>': torch.zeros(1, 1024)}, str(wrong))
    result = run_tool('tools/infer.py', TINY_CONFIG, '--embeddings', str(wrong), '--prompt', 'x',
                      '--out-dir', str(tmp_path / 'o'), check=False)
    assert result.returncode != 0
    assert 'uses dimension 32' in result.stderr and '(1, 1024)' in result.stderr
    assert not (tmp_path / 'o').exists()
