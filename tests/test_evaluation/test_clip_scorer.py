"""mmti.evaluation.ClipScorer on a tiny random CLIP saved to a folder."""
import numpy as np
import pytest
import torch
from mmti_testing import save_tiny_clip
from PIL import Image

from mmti.evaluation import CLIP_MEAN, CLIP_STD, ClipScorer, preprocess_images

@pytest.fixture(scope='module')
def scorer(tmp_path_factory):
    return ClipScorer(str(save_tiny_clip(tmp_path_factory.mktemp('clip'))), batch_size=2)


def _images(n, size=(40, 30)):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
            for _ in range(n)]


def test_preprocessing_shape_and_normalisation():
    white = Image.new('RGB', (50, 80), (255, 255, 255))
    pixels = preprocess_images([white, white.convert('L')], 32)
    assert pixels.shape == (2, 3, 32, 32) and pixels.dtype == torch.float32
    expected = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(pixels, expected[None, :, None, None].expand_as(pixels), atol=1e-5)


def test_preprocessing_crops_the_centre_of_the_shorter_side():
    array = np.zeros((32, 96, 3), dtype=np.uint8)
    array[:, 32:64] = 255  # a white centre third on a wide image
    pixels = preprocess_images([Image.fromarray(array)], 32)
    black = -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD)
    white = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(pixels[0], white[:, None, None].expand(3, 32, 32), atol=1e-5)
    assert not torch.allclose(pixels[0], black[:, None, None].expand(3, 32, 32))


def test_square_images_get_exactly_the_bicubic_resize_the_metric_used_before():
    # The toy world's samples are square: switching to transformers' CLIP
    # preprocessing left their pixels, and so the committed metrics, unchanged.
    image = _images(1, size=(24, 24))[0]
    pixels = preprocess_images([image], 32)
    resized = np.asarray(image.resize((32, 32), Image.BICUBIC), dtype=np.float32) / 255.0
    expected = (resized - np.asarray(CLIP_MEAN, dtype=np.float32)) / np.asarray(CLIP_STD, dtype=np.float32)
    assert torch.allclose(pixels[0], torch.from_numpy(expected.transpose(2, 0, 1)), atol=1e-6)


def test_features_are_unit_norm_and_batched(scorer):
    images = _images(5)
    features = scorer.image_features(images)  # batch_size=2: three batches
    assert features.shape == (5, 16)
    assert torch.allclose(features.norm(dim=-1), torch.ones(5), atol=1e-5)
    one_by_one = torch.cat([scorer.image_features([im]) for im in images])
    assert torch.allclose(features, one_by_one, atol=1e-5)
    texts = scorer.text_features(['a photo of a toy', 'a painting', 'in the jungle'])
    assert texts.shape == (3, 16)
    assert torch.allclose(texts.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(texts[0], texts[1])
    # Padding in a batch does not change a text's feature.
    assert torch.allclose(texts[1], scorer.text_features(['a painting'])[0], atol=1e-5)
    assert not features.requires_grad and not texts.requires_grad


def test_pixel_features_are_image_features_and_carry_gradients(scorer):
    images = _images(2)  # one batch of the scorer's: the same forward pass
    pixels = scorer.preprocess(images).requires_grad_(True)
    features = scorer.pixel_features(pixels)
    assert torch.equal(features.detach(), scorer.image_features(images))
    features[:, 0].sum().backward()  # e.g. a guide's score, back to the pixels
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0


def test_identical_images_give_image_similarity_one(scorer):
    from mmti.evaluation import image_similarity
    same = scorer.image_features([_images(1)[0]] * 3)
    assert image_similarity(same, same) == pytest.approx(1.0, abs=1e-5)
    different = scorer.image_features(_images(3))
    assert image_similarity(different, different) < 1.0 - 1e-4


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        ClipScorer(str(tmp_path / 'nope'))
    with pytest.raises(FileNotFoundError, match='no config.json'):
        ClipScorer(str(tmp_path))
    (tmp_path / 'config.json').write_text('{}')
    with pytest.raises(FileNotFoundError, match='no weights'):
        ClipScorer(str(tmp_path))
