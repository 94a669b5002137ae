from PIL import Image

from mmti.registry import TRANSFORMS
from .memo import InputMemo

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
        self._memo = InputMemo()

    def __call__(self, results: dict) -> dict:
        source = results['img']
        w, h = source.size
        img = self._memo.get(source)
        if img is None:
            scale = self.size / min(w, h)
            new_size = (max(self.size, round(w * scale)), max(self.size, round(h * scale)))
            img = source.resize(new_size, _FILTERS[self.interpolation]) if new_size != (w, h) else source
            self._memo.put(source, img)
        results['img'] = img
        # The dataset may keep a reduced copy of a larger file; the file's size then
        # comes with the sample (SDXL conditions on the size before resizing).
        results['original_size'] = results.get('original_size', (h, w))
        return results
