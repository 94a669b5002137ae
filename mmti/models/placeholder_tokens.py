"""Placeholder token names and their place in the tokenizer.

A concept with ``n`` vectors owns the tokens ``<tok>, <tok>_1 ... <tok>_{n-1}``
(diffusers' naming, so files move between tools); a prompt that says ``<tok>``
means all of them.
"""
import json
import re

from tokenizers import AddedToken


def vector_token_names(token: str, num_vectors: int) -> list[str]:
    """The tokenizer entries of a concept: ``['<tok>', '<tok>_1', ...]``."""
    if num_vectors < 1:
        raise ValueError(f'num_vectors must be >= 1, got {num_vectors}.')
    return [token] + [f'{token}_{i}' for i in range(1, num_vectors)]


def single_token_id(tokenizer, word: str, role: str = 'initializer_token') -> int:
    """Id of ``word`` if the tokenizer keeps it as exactly one token."""
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ValueError(
            f'{role} {word!r} must be exactly one token, but the tokenizer '
            f'splits it into {len(ids)}: {pieces}. Pick a single common word '
            '(e.g. "toy", "cat", "painting") that describes the concept.')
    return ids[0]


def add_placeholder_tokens(tokenizer, names: list[str]) -> list[int]:
    """Add ``names`` to the tokenizer and return their (consecutive) ids.

    Raises a clear error when a name is already known to the tokenizer, is
    the same as another added name once the tokenizer normalises it (CLIP
    lowercases text, so ``<Cat>`` and ``<cat>`` would be one word in every
    prompt, and which one won would vary from process to process), or would
    not survive that normalisation. A name that begins or ends with a letter,
    digit or underscore matches only as a whole word, so ``ehe`` leaves
    "behemoth" alone.
    """
    vocab = tokenizer.get_vocab()
    taken = [n for n in names if n in vocab]
    if taken:
        raise ValueError(
            f'Placeholder token(s) {taken} are already in the tokenizer '
            'vocabulary; choose a new string such as "<my-concept>".')
    _refuse_normalised_twins(tokenizer, names)
    first_id = len(tokenizer)
    if tokenizer.add_tokens([AddedToken(n, single_word=_has_word_edge(n)) for n in names]) != len(names):
        raise ValueError(f'The tokenizer refused to add {names}; choose other placeholder strings.')
    ids = tokenizer.convert_tokens_to_ids(names)
    if ids != list(range(first_id, first_id + len(names))):
        raise RuntimeError(f'Added tokens {names} got ids {ids}, expected consecutive ids from {first_id}.')
    for name, token_id in zip(names, ids):
        seen = tokenizer.encode(f'a {name} b', add_special_tokens=False)
        if token_id not in seen:
            remove_added_tokens(tokenizer, names)
            raise ValueError(
                f'The tokenizer does not keep placeholder {name!r} whole in a '
                'prompt (it normalises text, e.g. lowercases it). Use a '
                'lowercase token without spaces, such as "<my-concept>".')
    return ids


def _word_edges(name: str) -> tuple[bool, bool]:
    """Whether ``name`` begins, and ends, with a letter, digit or underscore."""
    return bool(re.match(r'\w', name[:1])), bool(re.match(r'\w', name[-1:]))


def _has_word_edge(name: str) -> bool:
    return any(_word_edges(name))


def _refuse_normalised_twins(tokenizer, names: list[str]) -> None:
    normalizer = getattr(_backend(tokenizer), 'normalizer', None)
    normalise = normalizer.normalize_str if normalizer is not None else (lambda text: text)
    seen = {normalise(n): n for n in tokenizer.get_added_vocab()}
    for name in names:
        twin = seen.setdefault(normalise(name), name)
        if twin != name:
            raise ValueError(
                f'Placeholder token {name!r} is the same as {twin!r} to this tokenizer (it '
                f'reads both as {normalise(name)!r}); choose a name that differs in more '
                'than letter case, such as "<my-concept-2>".')


def remove_added_tokens(tokenizer, names: list[str]) -> None:
    """Forget the added tokens ``names``; later added tokens move down to close the gap.

    The result tokenizes exactly as if ``names`` had never been added.
    """
    backend = _backend(tokenizer)
    gone = set(names)
    # transformers has no public "remove token"; the backend's serialised form
    # lists added tokens with their ids, so we drop ours, renumber the ones
    # added after them, and reload it.
    state = json.loads(backend.to_str())
    removed_ids = sorted(t['id'] for t in state['added_tokens'] if t['content'] in gone)
    if len(removed_ids) != len(gone):
        raise ValueError(f'Not all of {sorted(gone)} are added tokens of this tokenizer.')
    kept = []
    for entry in state['added_tokens']:
        if entry['content'] in gone:
            continue
        entry['id'] -= sum(1 for i in removed_ids if i < entry['id'])
        kept.append(entry)
    state['added_tokens'] = kept
    expected = len(tokenizer) - len(gone)
    tokenizer._tokenizer = type(backend).from_str(json.dumps(state))
    if len(tokenizer) != expected:
        raise RuntimeError(f'Could not shrink the tokenizer to {expected} tokens.')


def tokenizer_state(tokenizer) -> str:
    """The tokenizer's whole vocabulary state (added tokens included), to restore later."""
    return _backend(tokenizer).to_str()


def restore_tokenizer_state(tokenizer, state: str) -> None:
    """Return ``tokenizer`` exactly to a state from :func:`tokenizer_state`."""
    tokenizer._tokenizer = type(_backend(tokenizer)).from_str(state)


def _backend(tokenizer):
    backend = getattr(tokenizer, '_tokenizer', None)
    if backend is None:
        raise NotImplementedError('Changing the vocabulary needs a transformers fast tokenizer.')
    return backend


class PromptExpander:
    """Rewrites ``<tok>`` in prompts as ``<tok> <tok>_1 ... <tok>_{n-1}``."""

    def __init__(self) -> None:
        self._expansions: dict[str, str] = {}
        self._lookup: dict[str, str] = {}
        self._pattern: re.Pattern | None = None

    def add(self, token: str, names: list[str]) -> None:
        self._expansions[token] = ' '.join(names)
        for name in names[1:]:
            self._expansions[name] = name
        self._compile()

    def remove(self, token: str, names: list[str]) -> None:
        for name in names:
            self._expansions.pop(name, None)
        self._compile()

    def state(self) -> dict[str, str]:
        return dict(self._expansions)

    def restore(self, state: dict[str, str]) -> None:
        self._expansions = dict(state)
        self._compile()

    def _compile(self) -> None:
        # Longest first, so '<tok>_1' is matched whole rather than as '<tok>'.
        # As in the tokenizer: a name with a word character at an edge only
        # as a whole word, and in any letter case (CLIP lowercases prompts).
        alternatives = sorted(self._expansions, key=len, reverse=True)
        self._lookup = {name.lower(): self._expansions[name] for name in alternatives}
        self._pattern = re.compile('|'.join(map(_whole_word, alternatives)),
                                   re.IGNORECASE) if alternatives else None

    def __call__(self, prompt: str) -> str:
        if self._pattern is None:
            return prompt
        return self._pattern.sub(lambda m: self._lookup[m.group(0).lower()], prompt)

    def without_names(self, prompt: str) -> str:
        """``prompt`` with every loaded name (as prompts match it) blanked out."""
        return prompt if self._pattern is None else self._pattern.sub(' ', prompt)


def _whole_word(name: str) -> str:
    starts, ends = _word_edges(name)
    return (r'(?<!\w)' if starts else '') + re.escape(name) + (r'(?!\w)' if ends else '')
