"""mmti.evaluation.similarity: the paper's CLIP-space measures on hand-made features."""
import pytest
import torch

from mmti.evaluation import image_similarity, remove_placeholder, text_similarity


def test_orthogonal_and_parallel_features():
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[0.0, 3.0]])
    assert image_similarity(a, b) == pytest.approx(0.0)
    assert image_similarity(a, 2 * a, same_set=False) == pytest.approx(1.0)
    assert image_similarity(a, -a) == pytest.approx(-1.0)
    # Pairwise mean: (cos(x, x) + cos(x, y)) / 2 with x = e1, y = e2.
    assert image_similarity(a, torch.eye(2)) == pytest.approx(0.5)


def test_known_value_at_60_degrees():
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[0.5, 3 ** 0.5 / 2]])
    assert image_similarity(a, b) == pytest.approx(0.5)
    assert text_similarity(a, b) == pytest.approx(0.5)


def test_same_set_excludes_self_pairs():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # Self-pairs would give (1 + 0 + 0 + 1) / 4 = 0.5; without them it is 0.
    assert image_similarity(x, x) == pytest.approx(0.0)
    assert image_similarity(x, x.clone()) == pytest.approx(0.0)  # equal tensors: same set
    assert image_similarity(x, x, same_set=False) == pytest.approx(0.5)
    identical = torch.tensor([[0.3, 0.4]]).repeat(4, 1)
    assert image_similarity(identical, identical) == pytest.approx(1.0, abs=1e-5)
    different = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    assert image_similarity(different, different) < 1.0 - 1e-3
    with pytest.raises(ValueError, match='at least two'):
        image_similarity(x[:1], x[:1])


def test_image_similarity_is_symmetric():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 16, generator=g), torch.randn(5, 16, generator=g)
    assert image_similarity(a, b) == pytest.approx(image_similarity(b, a), abs=1e-12)
    assert -1.0 <= image_similarity(a, b) <= 1.0


def test_text_similarity_pairs_rows_and_broadcasts_one_text():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert text_similarity(images, texts) == pytest.approx(0.5)  # (1 + 0) / 2
    assert text_similarity(images, texts[:1]) == pytest.approx(0.5)
    assert text_similarity(images, images.flip(0)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match='2 images but 3 texts'):
        text_similarity(images, torch.ones(3, 2))


def test_feature_size_mismatch_is_refused():
    with pytest.raises(ValueError, match='differ'):
        image_similarity(torch.ones(2, 3), torch.ones(2, 4))


@pytest.mark.parametrize('prompt, token, expected', [
    ('a photo of <x> on the beach', '<x>', 'a photo of on the beach'),
    ('<x> in the jungle', '<x>', 'in the jungle'),
    ('a painting of <x>', '<x>', 'a painting of'),
    ('a <x>  made of   lego', '<x>', 'a made of lego'),
    ('<x> and <x>', '<x>', 'and'),
    ('a photo of a dog', '<x>', 'a photo of a dog'),
])
def test_remove_placeholder(prompt, token, expected):
    assert remove_placeholder(prompt, token) == expected
