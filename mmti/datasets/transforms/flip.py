from PIL import Image

from mmti.registry import TRANSFORMS
from .memo import InputMemo
from .randomness import sample_rng


@TRANSFORMS.register_module()
class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``prob``."""

    cache_safe = True  # the flip is recorded, so a cache can key by it

    def __init__(self, prob: float = 0.5):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}.')
        self.prob = prob
        self._memo = InputMemo()

    def __call__(self, results: dict) -> dict:
        flip = bool(sample_rng(results).random() < self.prob)
        if flip:
            source = results['img']
            mirrored = self._memo.get(source)
            if mirrored is None:
                mirrored = self._memo.put(source, source.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
            results['img'] = mirrored
        results['flipped'] = flip
        return results
