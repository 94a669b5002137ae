"""A token-embedding layer whose only trainable part is the placeholder rows."""
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class PlaceholderEmbedding(nn.Module):
    """Frozen token table plus small tables of rows for added tokens.

    Token ids below ``first_new_id`` come from the original table, which is
    never modified; ids from ``first_new_id`` on come from the concatenated
    ``rows`` (one small tensor per concept, in id order). The swap is one
    vectorised ``torch.where``, so there is no per-sample loop, the gradient
    reaches only the concept rows, and the optimizer state is a few KB.

    Args:
        base (nn.Embedding): The text encoder's original token table.
        first_new_id (int): Id of the first added token, i.e. the tokenizer
            length before any placeholder was added.

    Examples:
        >>> table = PlaceholderEmbedding(nn.Embedding(10, 4), first_new_id=10)
        >>> table.add_concept('<x>', torch.zeros(2, 4), trainable=True)
        >>> table(torch.tensor([[1, 10, 11]])).shape
        torch.Size([1, 3, 4])
    """

    def __init__(self, base: nn.Embedding, first_new_id: int):
        super().__init__()
        if first_new_id > base.num_embeddings:
            raise ValueError(
                f'The tokenizer has {first_new_id} tokens but the text encoder '
                f'table only {base.num_embeddings} rows; they do not belong '
                'together.')
        base.requires_grad_(False)
        self.base = base
        self.first_new_id = first_new_id
        self.rows = nn.ParameterList()
        self.concepts: list[str] = []

    @property
    def embedding_dim(self) -> int:
        return self.base.embedding_dim

    @property
    def num_embeddings(self) -> int:
        return self.first_new_id + self.num_new_rows

    @property
    def num_new_rows(self) -> int:
        return sum(r.shape[0] for r in self.rows)

    @property
    def weight(self) -> torch.Tensor:
        """The full table (a fresh concatenation; for inspection, not speed)."""
        return self.full_table()

    def full_table(self) -> torch.Tensor:
        base = self.base.weight[:self.first_new_id]
        if not self.rows:
            return base
        return torch.cat([base, *(r.to(base.dtype) for r in self.rows)])

    def add_concept(self, name: str, rows: torch.Tensor, trainable: bool) -> None:
        """Append the rows of one concept; its ids follow the previous ones."""
        if rows.ndim != 2 or rows.shape[1] != self.embedding_dim:
            raise ValueError(
                f'Embedding for {name!r} has shape {tuple(rows.shape)}; this '
                f'text encoder needs [num_vectors, {self.embedding_dim}].')
        # Trainable rows stay fp32 even when the frozen table is fp16/bf16, so
        # small Adam updates are not rounded away.
        param = nn.Parameter(
            rows.detach().to(device=self.base.weight.device, dtype=torch.float32).clone(),
            requires_grad=trainable)
        self.rows.append(param)
        self.concepts.append(name)

    def concept_rows(self, name: str) -> nn.Parameter:
        return self.rows[self.concepts.index(name)]

    def concept_id_range(self, name: str) -> range:
        start = self.first_new_id
        for concept, rows in zip(self.concepts, self.rows):
            if concept == name:
                return range(start, start + rows.shape[0])
            start += rows.shape[0]
        raise KeyError(name)

    def remove_concept(self, name: str) -> None:
        """Drop one concept; the ids of later concepts move down to close the gap."""
        index = self.concepts.index(name)
        kept = [r for i, r in enumerate(self.rows) if i != index]
        # ParameterList cannot delete; the kept Parameter objects are reused.
        self.rows = nn.ParameterList(kept)
        del self.concepts[index]

    def trainable_concepts(self) -> list[str]:
        return [c for c, r in zip(self.concepts, self.rows) if r.requires_grad]

    def trainable_rows(self) -> Iterator[nn.Parameter]:
        return (r for r in self.rows if r.requires_grad)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        is_new = input_ids >= self.first_new_id
        embeds = self.base(input_ids.masked_fill(is_new, 0))
        if not self.rows:
            return embeds
        new_table = torch.cat(self._rows_for(input_ids)).to(embeds.dtype)
        new_index = (input_ids - self.first_new_id).clamp(0, new_table.shape[0] - 1)
        return torch.where(is_new.unsqueeze(-1), F.embedding(new_index, new_table), embeds)

    def _rows_for(self, input_ids: torch.Tensor) -> list[torch.Tensor]:
        """Every concept's rows; trainable ones the ids never use are detached.

        A concept absent from the batch then gets no gradient at all (None,
        not zeros), so the optimizer leaves it exactly as it is: no momentum
        step, no decay. This matters once several concepts train and a batch
        holds only some of them; with one trainable concept nothing changes
        (and no ids are read back from the device).
        """
        rows = list(self.rows)
        if not torch.is_grad_enabled() or sum(r.requires_grad for r in rows) < 2:
            return rows
        used = torch.zeros(self.num_new_rows, dtype=torch.bool)
        new_ids = input_ids[input_ids >= self.first_new_id] - self.first_new_id
        used[new_ids.unique().cpu()] = True
        kept, start = [], 0
        for r in rows:
            kept.append(r if used[start:start + r.shape[0]].any() else r.detach())
            start += r.shape[0]
        return kept

    def extra_repr(self) -> str:
        return (f'first_new_id={self.first_new_id}, dim={self.embedding_dim}, '
                f'concepts={self.concepts}')
