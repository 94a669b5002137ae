from PIL import Image

from mmti.registry import TRANSFORMS

_FILTERS = {'nearest': Image.Resampling.NEAREST, 'bilinear': Image.Resampling.BILINEAR,
            'bicubic': Image.Resampling.BICUBIC, 'lanczos': Image.Resampling.LANCZOS}


@TRANSFORMS.register_module()
class ResizeShorterSide:
    """Scale ``results['img']`` so its shorter side is ``size``, keeping aspect.

    Unlike a plain resize to ``size x size``, the concept is not stretched.
    """

    cache_safe = True  # the result depends only on recorded inputs

    def __init__(self, size: int, interpolation: str = 'bicubic'):
        if interpolation not in _FILTERS:
            raise ValueError(f'interpolation must be one of {sorted(_FILTERS)}, got {interpolation!r}.')
        self.size = int(size)
        self.interpolation = interpolation

    def __call__(self, results: dict) -> dict:
        img = results['img']
        w, h = img.size
        scale = self.size / min(w, h)
        new_size = (max(self.size, round(w * scale)), max(self.size, round(h * scale)))
        if new_size != (w, h):
            img = img.resize(new_size, _FILTERS[self.interpolation])
        results['img'] = img
        results['original_size'] = (h, w)
        return results
