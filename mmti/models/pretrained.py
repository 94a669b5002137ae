"""Diffusers/transformers components built from config via ``from_pretrained``.

Each registered name loads one component of a Stable Diffusion folder or hub
id, so a config can say ``unet=dict(type='UNet2DConditionModel',
subfolder='unet')`` and one ``pretrained_model`` string fills in where from.
"""
import diffusers
import torch
import transformers

from mmti.registry import MODELS

_DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def torch_dtype(name: str | torch.dtype | None) -> torch.dtype:
    """Map a config precision name ('fp32', 'fp16', 'bf16') to a torch dtype."""
    if name is None:
        return torch.float32
    if isinstance(name, torch.dtype):
        return name
    if name not in _DTYPES:
        raise ValueError(f'Unknown dtype {name!r}; use one of {sorted(_DTYPES)}.')
    return _DTYPES[name]


def _register_from_pretrained(library, class_name: str) -> None:
    cls = getattr(library, class_name)

    def build(pretrained_model_name_or_path: str, **kwargs):
        return cls.from_pretrained(pretrained_model_name_or_path, **kwargs)

    build.__name__ = class_name
    build.__doc__ = f'``{class_name}.from_pretrained`` (registered by mmti).'
    MODELS.register_module(name=class_name, module=build)


for _name in ('UNet2DConditionModel', 'AutoencoderKL', 'DDPMScheduler'):
    _register_from_pretrained(diffusers, _name)
for _name in ('CLIPTextModel', 'CLIPTextModelWithProjection', 'CLIPTokenizer'):
    _register_from_pretrained(transformers, _name)


def build_component(cfg: dict, pretrained_model: str, **defaults):
    """Build one component; ``pretrained_model`` is the default source."""
    cfg = dict(cfg)
    cfg.setdefault('pretrained_model_name_or_path', pretrained_model)
    for key, value in defaults.items():
        cfg.setdefault(key, value)
    return MODELS.build(cfg)
