from mmti.registry import TRANSFORMS
from .memo import InputMemo
from .randomness import sample_rng


def _check_fits(img, size: int) -> None:
    if min(img.size) < size:
        raise ValueError(f'Image of size {img.size} is smaller than the crop {size}; '
                         'put ResizeShorterSide before the crop.')


def _crop(results: dict, size: int, left: int, top: int) -> dict:
    results['img'] = results['img'].crop((left, top, left + size, top + size))
    results['crop_top_left'] = (top, left)
    return results


@TRANSFORMS.register_module()
class CenterCrop:
    """Cut the central ``size x size`` square."""

    cache_safe = True

    def __init__(self, size: int):
        self.size = int(size)
        self._memo = InputMemo()

    def __call__(self, results: dict) -> dict:
        source = results['img']
        _check_fits(source, self.size)
        w, h = source.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        cropped = self._memo.get(source)
        if cropped is None:
            cropped = self._memo.put(source, source.crop((left, top, left + self.size, top + self.size)))
        results['img'] = cropped
        results['crop_top_left'] = (top, left)
        return results


@TRANSFORMS.register_module()
class RandomCrop:
    """Cut a ``size x size`` square at a random position."""

    cache_safe = False  # every position is a new variant: caching latents would not pay

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, results: dict) -> dict:
        _check_fits(results['img'], self.size)
        rng = sample_rng(results)
        w, h = results['img'].size
        left = int(rng.integers(w - self.size + 1))
        top = int(rng.integers(h - self.size + 1))
        return _crop(results, self.size, left, top)
