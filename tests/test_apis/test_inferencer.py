"""TextualInversionInferencer: folder or config + embedding files -> images, one call."""
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tool_runner import TINY_CONFIG, load_tool

from mmti.apis import TextualInversionInferencer
from mmti.utils import UserError
from mmti_testing import TINY_SD

FAST = dict(steps=2, height=32, width=32, show_progress=False)


@pytest.fixture(scope='module')
def embedding(tmp_path_factory):
    """A diffusers-layout file with a distinctive '<cat-toy>' row."""
    path = tmp_path_factory.mktemp('emb') / 'learned_embeds.safetensors'
    save_file({'<cat-toy>': torch.randn(1, 32, generator=torch.Generator().manual_seed(1)) * 3},
              str(path))
    return path


@pytest.fixture(scope='module')
def inferencer(embedding):
    return TextualInversionInferencer(str(TINY_SD), embeddings=[str(embedding)])


def _pixels(images):
    return np.stack([np.asarray(image) for image in images])


def test_folder_and_embedding_give_images_with_the_token_loaded(inferencer, embedding):
    assert inferencer.device.type == ('cuda' if torch.cuda.is_available() else 'cpu')
    assert inferencer.tokens == ['<cat-toy>']
    rows = inferencer.model.get_embeddings(['<cat-toy>'])['<cat-toy>']
    assert torch.equal(rows.float().cpu(), load_file(str(embedding))['<cat-toy>'])
    images = inferencer('a <cat-toy> bag', seed=0, num_images=2, **FAST)
    assert len(images) == 2 and all(image.size == (32, 32) for image in images)


def test_same_seed_same_pixels_and_the_token_changes_them(inferencer):
    first = _pixels(inferencer(['a <cat-toy> bag', 'a toy bag'], seed=3, **FAST))
    again = _pixels(inferencer(['a <cat-toy> bag', 'a toy bag'], seed=3, **FAST))
    assert np.array_equal(first, again)
    # Same noise (same seed and index), different text: the learned row is used.
    assert not np.array_equal(first[0], first[1])
    other_seed = _pixels(inferencer('a <cat-toy> bag', seed=4, **FAST))
    assert not np.array_equal(first[0], other_seed[0])


def test_image_i_is_the_same_whatever_num_images_and_batch(inferencer):
    one = _pixels(inferencer('a <cat-toy> bag', seed=5, num_images=1, **FAST))
    three = _pixels(inferencer('a <cat-toy> bag', seed=5, num_images=3, batch_size=2, **FAST))
    assert np.array_equal(one[0], three[0])


def test_config_model_matches_the_command_line_pixels(embedding, tmp_path):
    inferencer = TextualInversionInferencer(TINY_CONFIG, embeddings=str(embedding), device='cpu')
    images = inferencer('a <cat-toy> bag', seed=0, num_images=2, steps=2, out_dir=tmp_path / 'api',
                        show_progress=False)
    # In this process: across processes the CPU kernels may round one value differently.
    cli = load_tool('infer').main([
        TINY_CONFIG, '--embeddings', str(embedding), '--prompt', 'a <cat-toy> bag',
        '--num-images', '2', '--seed', '0', '--steps', '2', '--device', 'cpu',
        '--out-dir', str(tmp_path / 'cli')])
    api = sorted((tmp_path / 'api').glob('*.png'))
    assert [p.name for p in cli] == [p.name for p in api] and len(cli) == 2
    assert np.array_equal(_pixels(images), _pixels([Image.open(p) for p in cli]))
    assert np.array_equal(_pixels(images), _pixels([Image.open(p) for p in api]))


def test_a_folder_without_embeddings_is_refused_with_the_fix():
    with pytest.raises(ValueError, match='give embeddings='):
        TextualInversionInferencer(str(TINY_SD))


@pytest.mark.parametrize('folder', ['data/tiny-sdd', '/no/such/model'])
def test_a_mistyped_model_folder_is_named_not_called_a_base_model(folder, embedding):
    # Before any hub lookup, with or without embeddings: where it was looked for.
    for embeddings in (None, embedding):
        with pytest.raises(UserError, match=rf'model {folder} is (not|neither) a (local )?folder'
                                             rf' \(looked in .*{folder.split("/")[-1]}\)'):
            TextualInversionInferencer(folder, embeddings)


def test_a_misspelt_config_option_is_named():
    with pytest.raises(UserError, match=r"model \(TextualInversion\) has no field 'pretrainedmodel'"):
        TextualInversionInferencer(TINY_CONFIG, cfg_options={'model.pretrainedmodel': 'x'})


def test_an_sdxl_folder_with_an_sdxl_file_gives_images(tmp_path):
    from mmti.fileio import write_embedding_file
    from mmti_testing import REPO_ROOT
    path = write_embedding_file(tmp_path / 'sdxl.safetensors', {'<sdxl-toy>': torch.randn(2, 32)},
                                'sdxl', embeddings_2={'<sdxl-toy>': torch.randn(2, 64)})
    inferencer = TextualInversionInferencer(str(REPO_ROOT / 'data' / 'tiny-sdxl'),
                                            embeddings=str(path))
    assert type(inferencer.model).__name__ == 'TextualInversionXL'
    assert inferencer.tokens == ['<sdxl-toy>']
    images = inferencer('a <sdxl-toy> bag', seed=0, **FAST)
    assert len(images) == 1 and images[0].size == (32, 32)
