import numpy as np
import torch

from mmti.registry import TRANSFORMS
from .memo import InputMemo


@TRANSFORMS.register_module()
class PackInputs:
    """Image to a ``[3, H, W]`` float tensor in [-1, 1], plus caption and seed.

    [-1, 1] is the range Stable Diffusion's VAE was trained on. When the
    dataset says the pipeline is deterministic up to recorded choices, a
    ``latent_keys`` string names the variant for the model's latent cache.
    """

    cache_safe = True

    def __init__(self):
        self._memo = InputMemo()

    def __call__(self, results: dict) -> dict:
        img = results['img']
        tensor = self._memo.get(img)
        if tensor is None:
            pixels = np.asarray(img.convert('RGB'), dtype=np.float32)
            tensor = torch.from_numpy(pixels).permute(2, 0, 1).contiguous() / 127.5 - 1.0
            # Shared between samples; consumers must not modify it in place (the
            # data preprocessor stacks a copy).
            tensor = self._memo.put(img, tensor)
        key = None
        if results.get('latent_cacheable'):
            # Everything that decides the pixels: which image (of which concept:
            # image 0 of one concept is not image 0 of another), where cut, mirrored.
            key = (f"{results.get('image_index')}|{results.get('crop_top_left')}|"
                   f"{results.get('flipped', False)}|{tuple(tensor.shape)}|"
                   f"{results.get('concept', '')}")
        # SDXL's micro-conditioning: size before resizing, crop corner, size after.
        height, width = tensor.shape[1:]
        time_ids = torch.tensor([*results.get('original_size', (height, width)),
                                 *results.get('crop_top_left', (0, 0)), height, width],
                                dtype=torch.float32)
        packed = {'inputs': tensor, 'captions': results['caption'],
                  'noise_seeds': results.get('noise_seed'), 'latent_keys': key,
                  'time_ids': time_ids}
        if 'concept' in results:  # which concept's rows this sample trains
            packed['concepts'] = results['concept']
        return packed
