"""CLIP-space similarities of the Textual Inversion paper (Gal et al. 2022, Sec. 5).

* Image similarity (reconstruction): mean pairwise cosine similarity between
  generated images and the concept's training images.
* Text similarity (editability): mean cosine similarity between each
  generated image and the prompt it came from, with the placeholder removed.
"""
import re

import torch


def _unit(features: torch.Tensor) -> torch.Tensor:
    features = torch.as_tensor(features, dtype=torch.float64)
    if features.ndim != 2:
        raise ValueError(f'Expected features of shape [N, D], got {tuple(features.shape)}.')
    return features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def image_similarity(a_features: torch.Tensor, b_features: torch.Tensor,
                     same_set: bool | None = None) -> float:
    """Mean cosine similarity over all pairs (one image of ``a``, one of ``b``).

    When ``a`` and ``b`` are the same set of images, self-pairs (the diagonal,
    always 1) are left out, so a set scores 1.0 against itself only when all
    its images are identical. ``same_set=None`` detects this: the same tensor
    object, or equal tensors. Symmetric in ``a`` and ``b``.
    """
    if same_set is None:
        same_set = a_features is b_features or (
            a_features.shape == b_features.shape and torch.equal(a_features, b_features))
    a, b = _unit(a_features), _unit(b_features)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f'Feature sizes differ: {a.shape[1]} and {b.shape[1]}.')
    if len(a) == 0 or len(b) == 0:
        raise ValueError('image_similarity needs at least one image in each set.')
    cosine = a @ b.T
    if not same_set:
        return float(cosine.mean())
    if cosine.shape[0] != cosine.shape[1]:
        raise ValueError('same_set=True needs two feature sets of the same size.')
    n = cosine.shape[0]
    if n < 2:
        raise ValueError('image_similarity of a set with itself needs at least two images.')
    return float((cosine.sum() - cosine.diagonal().sum()) / (n * (n - 1)))


def text_similarity(image_features: torch.Tensor, text_features: torch.Tensor) -> float:
    """Mean cosine between image i and text i (one text row is used for all)."""
    images, texts = _unit(image_features), _unit(text_features)
    if len(images) == 0:
        raise ValueError('text_similarity needs at least one image.')
    if len(texts) == 1:
        texts = texts.expand(len(images), -1)
    if texts.shape != images.shape:
        raise ValueError(f'Got {len(images)} images but {len(texts)} texts '
                         f'(features {tuple(images.shape)} vs {tuple(texts.shape)}).')
    return float((images * texts).sum(dim=-1).mean())


def remove_placeholder(prompt: str, token: str) -> str:
    """The prompt without the placeholder, whitespace collapsed.

    >>> remove_placeholder('a photo of <x> on the beach', '<x>')
    'a photo of on the beach'
    """
    if token:
        prompt = prompt.replace(token, ' ')
    return re.sub(r'\s+', ' ', prompt).strip()
