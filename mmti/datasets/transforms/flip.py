from PIL import Image

from mmti.registry import TRANSFORMS
from .randomness import sample_rng


@TRANSFORMS.register_module()
class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``prob``."""

    cache_safe = True  # the flip is recorded, so a cache can key by it

    def __init__(self, prob: float = 0.5):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}.')
        self.prob = prob

    def __call__(self, results: dict) -> dict:
        flip = bool(sample_rng(results).random() < self.prob)
        if flip:
            results['img'] = results['img'].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        results['flipped'] = flip
        return results
