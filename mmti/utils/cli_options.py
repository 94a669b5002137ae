"""``--cfg-options KEY=VALUE ...``, read as every mmti command reads it."""
import argparse

from mmengine.config import DictAction


class ConfigOptionsAction(DictAction):
    """mmengine's ``KEY=VALUE`` parser, with a word that lacks ``=`` named as
    the usage error it is rather than a Python unpacking message."""

    def __call__(self, parser, namespace, values, option_string=None):
        for value in values if isinstance(values, list) else [values]:
            if '=' not in value:
                raise argparse.ArgumentError(
                    self, f'{value!r} is not KEY=VALUE; write e.g. train_cfg.max_iters=100 '
                    '(quote values with spaces or brackets).')
        super().__call__(parser, namespace, values, option_string)


def add_cfg_options(parser: argparse.ArgumentParser, **kwargs) -> None:
    """The ``--cfg-options`` argument of every command that reads a config."""
    kwargs.setdefault('help', 'override config fields, e.g. train_cfg.max_iters=100')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction, **kwargs)


def check_device(name: str):
    """The ``torch.device`` of a ``--device`` value, or one error naming the fix."""
    import torch
    from .cli_errors import UserError
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f'--device {name!r} is not a device; use cpu, cuda or cuda:N.') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UserError(f'--device {name}: this machine has no usable CUDA GPU; pass '
                        '--device cpu.')
    return device
