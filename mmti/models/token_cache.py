"""Token ids of prompts, each prompt tokenised once.

Training captions come from a few dozen templates (or a few caption files),
so the same prompts are tokenised over and over; the ids of a prompt never
change while the tokenizer's vocabulary does not.
"""
from collections.abc import Callable, Sequence

import torch


class TokenIdCache:
    """``[B, model_max_length]`` ids per prompt, padded and truncated as SD does.

    Args:
        limit: Most prompts remembered; past it the cache starts afresh, so an
            open-ended prompt stream cannot grow it without bound.
    """

    def __init__(self, limit: int = 4096):
        self.limit = limit
        self._ids: dict[tuple[int, str], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def clear(self) -> None:
        """Forget everything: call when a tokenizer's vocabulary changes."""
        self._ids.clear()

    def __call__(self, tokenizer, prompts: Sequence[str],
                 expand: Callable[[str], str] = lambda prompt: prompt) -> torch.Tensor:
        """Ids of ``prompts`` by ``tokenizer``; ``expand`` rewrites a prompt first."""
        keys = [(id(tokenizer), p) for p in prompts]
        missing = [k for k in dict.fromkeys(keys) if k not in self._ids]
        if missing:
            if len(self._ids) + len(missing) > self.limit:
                self._ids.clear()
                missing = list(dict.fromkeys(keys))  # everything this call needs
            ids = tokenizer([expand(p) for _, p in missing], padding='max_length',
                            max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors='pt').input_ids
            self._ids.update(zip(missing, ids))
        return torch.stack([self._ids[k] for k in keys])
