from .crop import CenterCrop, RandomCrop
from .flip import RandomHorizontalFlip
from .pack_inputs import PackInputs
from .resize import ResizeShorterSide

__all__ = ['CenterCrop', 'PackInputs', 'RandomCrop', 'RandomHorizontalFlip', 'ResizeShorterSide']
