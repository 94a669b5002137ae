"""The concepts a model knows, kept in step across every text encoder.

A concept (``<cat-toy>`` with ``n`` vectors) lives in three places per text
encoder: the tokenizer (its token names), the placeholder table (its rows)
and the prompt expander (``<tok>`` means all ``n`` names). SDXL has two text
encoders, so six places. :class:`ConceptVocabulary` is the only code that
changes them, and every change is all-or-nothing: it is checked completely
before anything is touched, and undone if applying it still fails, so a
failed load can never leave a tokenizer and its table out of step.
"""
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mmti.fileio import describe_dim
from .placeholder_embedding import PlaceholderEmbedding
from .placeholder_tokens import (PromptExpander, add_placeholder_tokens, remove_added_tokens,
                                 restore_tokenizer_state, tokenizer_state, vector_token_names)
from .token_cache import TokenIdCache


#: How a loaded file's concept gets another name (the default fix in messages).
LOAD_RENAME = ("for a file: load_embeddings(path, token='<my-concept>'), or tools/infer.py "
               "--token '<my-concept>'")

class RowCountError(ValueError):
    """Rows of another count than the model's for a token; ``rows``: the count they have,
    ``problem``: the message without its fix (a command line words its own)."""

    def __init__(self, problem: str, rows: int):
        super().__init__(f'{problem}; set num_vectors={rows} in the config.')
        self.problem, self.rows = problem, rows


@dataclass
class TextSlot:
    """One text encoder's view of the vocabulary.

    Args:
        name: What embedding files call it ('clip_l', 'clip_g'); used in messages.
        tokenizer: Its tokenizer (a transformers fast tokenizer).
        table: The placeholder table installed as its input embedding.
    """
    name: str
    tokenizer: object
    table: PlaceholderEmbedding


#: One concept's rows, one ``[n, dim]`` tensor per slot, in slot order.
SlotRows = list[torch.Tensor]


class ConceptVocabulary:
    """Add, replace and remove concepts in every slot at once.

    Args:
        slots: The text encoders, first one first.
    """

    def __init__(self, slots: Sequence[TextSlot]):
        if not slots:
            raise ValueError('A vocabulary needs at least one text encoder.')
        self.slots = list(slots)
        self.expand_prompt = PromptExpander()
        self._token_ids = TokenIdCache()

    # ----------------------------------------------------------------- queries
    @property
    def concepts(self) -> list[str]:
        """Placeholder tokens, in id order."""
        return list(self.slots[0].table.concepts)

    @property
    def dims(self) -> list[int]:
        return [slot.table.embedding_dim for slot in self.slots]

    def rows(self, token: str) -> list[nn.Parameter]:
        """The live rows of ``token``, one parameter per slot."""
        self._require_known([token])
        return [slot.table.concept_rows(token) for slot in self.slots]

    def trainable_ids(self, slot: int = 0) -> list[int]:
        """Token ids (in ``slot``'s tokenizer) of every trainable row."""
        table = self.slots[slot].table
        return [i for name in table.trainable_concepts() for i in table.concept_id_range(name)]

    def tokenize(self, prompts: Sequence[str], slot: int = 0) -> torch.Tensor:
        """``[B, max_length]`` ids of ``prompts`` with placeholders expanded."""
        return self._token_ids(self.slots[slot].tokenizer, prompts, self.expand_prompt)

    def prompt_length(self, prompt: str, slot: int = 0) -> int:
        """Tokens of ``prompt`` (placeholders expanded, start/end included), untruncated."""
        tokenizer = self.slots[slot].tokenizer
        return len(tokenizer(self.expand_prompt(prompt), truncation=False,
                             verbose=False)['input_ids'])

    # ----------------------------------------------------------------- changes
    def add(self, token: str, rows: SlotRows, trainable: bool, origin: str | None = None,
            rename: str = LOAD_RENAME) -> None:
        """Add one new concept (its rows trainable or frozen)."""
        self.update({token: rows}, trainable=trainable,
                    origins={token: origin} if origin else None, rename=rename)

    def update(self, concepts: Mapping[str, SlotRows], trainable: bool = False,
               replaceable: Sequence[str] = (),
               origins: Mapping[str, str] | None = None,
               rename: str = LOAD_RENAME) -> list[str]:
        """Add new concepts and replace the rows of known ones, all or none.

        Args:
            concepts: ``{token: [rows per slot]}``.
            trainable: Whether new concepts' rows train.
            replaceable: Known tokens whose rows may be replaced (with rows
                of the same shape); any other known token is refused.
            origins: ``{token: where its rows come from}``, for messages.
            rename: How the user gives a concept another name, for messages.

        Returns:
            list[str]: The tokens, in the given order.
        """
        origins = dict(origins or {})
        origin = ', '.join(dict.fromkeys(origins.values())) or 'the given rows'
        checked = {token: self._checked_rows(token, rows, origins.get(token, origin))
                   for token, rows in concepts.items()}
        known = [t for t in checked if t in self.concepts]
        new = [t for t in checked if t not in self.concepts]
        refused = [t for t in known if t not in replaceable]
        if refused:
            raise ValueError(f'Token {refused[0]!r} is already loaded; pass replace=True to '
                             f'overwrite it with the rows from {origins.get(refused[0], origin)}, '
                             'or unload it first.')
        for token in known:
            for slot, current, rows in zip(self.slots, self.rows(token), checked[token]):
                if current.shape != rows.shape:
                    raise RowCountError(
                        f'{token!r} has {current.shape[0]} vector(s) in this model but '
                        f'{rows.shape[0]} in {origins.get(token, origin)} ({slot.name})',
                        rows.shape[0])
        self._check_new_names({t: checked[t][0].shape[0] for t in new}, origin, rename)
        with self._transaction():
            for token in known:
                with torch.no_grad():
                    for current, rows in zip(self.rows(token), checked[token]):
                        current.copy_(rows.to(current))
            for token in new:
                self._append(token, checked[token], trainable)
        return list(checked)

    def remove(self, tokens: Sequence[str]) -> list[str]:
        """Remove concepts; later concepts' ids close up, as if never added."""
        tokens = list(dict.fromkeys(tokens))
        self._require_known(tokens, verb='unload')
        names = {token: vector_token_names(token, self.slots[0].table.concept_rows(token).shape[0])
                 for token in tokens}
        with self._transaction():
            for slot in self.slots:
                # At once: each removal rebuilds the tokenizer, which takes a
                # good part of a second (unloading a catalogue took minutes).
                remove_added_tokens(slot.tokenizer, [n for token in tokens for n in names[token]])
                for token in tokens:
                    slot.table.remove_concept(token)
            for token in tokens:
                self.expand_prompt.remove(token, names[token])
        return tokens

    # ---------------------------------------------------------------- helpers
    def _append(self, token: str, rows: SlotRows, trainable: bool) -> None:
        names = vector_token_names(token, rows[0].shape[0])
        for slot, slot_rows in zip(self.slots, rows):
            ids = add_placeholder_tokens(slot.tokenizer, names)
            if ids[0] != slot.table.num_embeddings:
                raise RuntimeError(f'{slot.name}: tokenizer and placeholder table are out of step.')
            slot.table.add_concept(token, slot_rows, trainable=trainable)
        self.expand_prompt.add(token, names)

    def _checked_rows(self, token, rows, origin: str) -> SlotRows:
        if not isinstance(token, str) or not token.strip() or token != token.strip() \
                or any(c.isspace() for c in token):
            raise ValueError(f'Token name {token!r} from {origin} cannot be used in prompts (empty '
                             "or with spaces); load it under another name with token='<name>'.")
        if isinstance(rows, (torch.Tensor, nn.Parameter)) or not isinstance(rows, Sequence):
            rows = [rows]
        if len(rows) != len(self.slots):
            raise ValueError(
                f'{token!r} from {origin} has rows for {len(rows)} text encoder(s); this model has '
                f'{len(self.slots)} ({", ".join(s.name for s in self.slots)}).')
        checked = [_as_rows(token, r, origin, slot) for r, slot in zip(rows, self.slots)]
        counts = {r.shape[0] for r in checked}
        if len(counts) != 1:
            raise ValueError(f'{token!r} from {origin} has different vector counts per text encoder '
                             f'({", ".join(f"{s.name}: {r.shape[0]}" for s, r in zip(self.slots, checked))}); '
                             'the file is inconsistent.')
        return checked

    def _check_new_names(self, vectors: Mapping[str, int], origin: str, rename: str) -> None:
        """New tokens' names must be free in every tokenizer and unique among themselves."""
        seen: dict[str, str] = {}
        for token, count in vectors.items():
            for name in vector_token_names(token, count):
                if name in seen:
                    raise ValueError(f'Token name {name!r} from {origin} is used twice '
                                     f'({seen[name]!r} and {token!r}); rename one.')
                seen[name] = token
        for slot in self.slots:
            vocab = slot.tokenizer.get_vocab()
            taken = [n for n in seen if n in vocab or _is_base_word(slot, n)]
            if taken:
                raise ValueError(
                    f'Token(s) {taken[:5]} are already in the tokenizer vocabulary ({slot.name}, '
                    f'rows from {origin}); choose a new string such as "<my-concept>" ({rename}).')

    def _require_known(self, tokens: Sequence[str], verb: str = 'use') -> None:
        unknown = [t for t in tokens if t not in self.concepts]
        if unknown:
            raise ValueError(f'Cannot {verb} {unknown}: not loaded (loaded: {self.concepts}).')

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """Undo every change made inside the block if it raises."""
        for slot in self.slots:
            if len(slot.tokenizer) != slot.table.num_embeddings:
                raise RuntimeError(f'{slot.name}: tokenizer ({len(slot.tokenizer)}) and placeholder '
                                   f'table ({slot.table.num_embeddings}) are out of step.')
        saved = [(tokenizer_state(slot.tokenizer), list(slot.table.rows), list(slot.table.concepts),
                  [r.detach().clone() for r in slot.table.rows]) for slot in self.slots]
        expansions = self.expand_prompt.state()
        self._token_ids.clear()  # ids of prompts may change
        try:
            yield
        except BaseException:
            for slot, (tokens, params, concepts, values) in zip(self.slots, saved):
                restore_tokenizer_state(slot.tokenizer, tokens)
                slot.table.rows = nn.ParameterList(params)
                slot.table.concepts = concepts
                with torch.no_grad():
                    for param, value in zip(params, values):
                        param.copy_(value)
            self.expand_prompt.restore(expansions)
            self._token_ids.clear()
            raise


def _is_base_word(slot: TextSlot, name: str) -> bool:
    """True if the tokenizer already reads ``name`` as one word of its own vocabulary
    (``sofa`` is ``sofa</w>`` in CLIP's table); adding it would take over that word."""
    ids = slot.tokenizer.encode(name, add_special_tokens=False)
    return len(ids) == 1 and ids[0] < slot.table.first_new_id


def _as_rows(token: str, value, origin: str, slot: TextSlot) -> torch.Tensor:
    """``value`` as a finite float ``[n, dim]`` tensor for ``slot``, or a clear error."""
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)  # numpy arrays and nested lists
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f'Rows for {token!r} from {origin} are a {type(value).__name__}, not '
                             'a tensor of numbers.') from None
    if not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
        raise ValueError(f'Rows for {token!r} from {origin} have dtype {value.dtype}; expected '
                         'floating-point numbers.')
    if value.ndim == 1:
        value = value[None]
    dim = slot.table.embedding_dim
    if value.ndim != 2 or value.shape[1] != dim or value.shape[0] < 1:
        found = describe_dim(value.shape[-1]) if value.ndim else 'none'
        raise ValueError(
            f'Rows for {token!r} ({slot.name}) from {origin} have shape {tuple(value.shape)}: '
            f'dimension {found}, but this text encoder uses dimension {describe_dim(dim)}; it was '
            'made for another base model (rows must be [num_vectors, dim]).')
    value = value.detach().float()
    if not torch.isfinite(value).all():
        raise ValueError(f'Rows for {token!r} from {origin} contain NaN or inf; the file is '
                         'broken (a diverged run?). Use an earlier snapshot.')
    return value
