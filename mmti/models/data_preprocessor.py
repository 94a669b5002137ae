"""Batch assembly: stack images on the device, keep text and seeds on the host."""
import torch
from mmengine.model import BaseDataPreprocessor

from mmti.registry import MODELS


@MODELS.register_module()
class TextualInversionDataPreprocessor(BaseDataPreprocessor):
    """Turn a ``pseudo_collate`` batch into ``TextualInversion.forward`` kwargs.

    Captions and noise seeds stay Python lists: moving them to the GPU and
    back would cost a host sync every step.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        images = data['inputs']
        if isinstance(images, (list, tuple)):
            images = torch.stack(list(images))
        out = {'inputs': images.to(self.device, non_blocking=True),
               'captions': list(data['captions'])}
        if data.get('noise_seeds') is not None:
            out['noise_seeds'] = [int(s) for s in data['noise_seeds']]
        if data.get('concepts') is not None:
            out['concepts'] = list(data['concepts'])
        if data.get('latent_keys') is not None:
            out['latent_keys'] = list(data['latent_keys'])
        if data.get('time_ids') is not None:
            time_ids = data['time_ids']
            if isinstance(time_ids, (list, tuple)):
                time_ids = torch.stack(list(time_ids))
            out['time_ids'] = time_ids.to(self.device, non_blocking=True)
        return out
