"""Checkpoints of a Textual Inversion model hold the concept rows only.

The frozen pretrained weights are reloaded from ``pretrained_model``; keeping
them out of the state dict makes a checkpoint KB instead of GB.
"""
import torch


def keep_trainable_state(module: torch.nn.Module, state_dict: dict, prefix: str,
                         local_metadata: dict) -> None:
    """State-dict post hook: drop the frozen weights (``module.FROZEN``), in place."""
    for key in list(state_dict):
        head, _, rest = key[len(prefix):].partition('.')
        if head.startswith('token_embedding') and rest.startswith('rows.'):
            continue  # the learned (and loaded) concept rows
        if head in module.FROZEN or head.startswith('token_embedding'):
            del state_dict[key]


def ignore_missing_frozen_keys(module: torch.nn.Module, incompatible_keys) -> None:
    """Load-state-dict post hook: frozen weights are expected to be missing."""
    frozen = tuple(f'{name}.' for name in module.FROZEN)
    missing = [k for k in incompatible_keys.missing_keys
               if not k.startswith(frozen) and '.base.' not in k]
    incompatible_keys.missing_keys[:] = missing
