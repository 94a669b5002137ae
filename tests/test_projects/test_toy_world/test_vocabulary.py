"""Toy-world vocabulary: every attribute word is one token of SD's CLIP tokenizer."""
import pytest
from transformers import CLIPTokenizer

from projects.toy_world.world import (BACKGROUNDS, COLOURS, PATTERNS, POSITION_PHRASES, POSITIONS, SHAPES,
                            SIZES, all_words)
from mmti_testing import TINY_SD


@pytest.fixture(scope='module')
def tokenizer():
    return CLIPTokenizer.from_pretrained(str(TINY_SD), subfolder='tokenizer')


def test_every_word_is_one_clip_token(tokenizer):
    for word in all_words():
        ids = tokenizer.encode(word, add_special_tokens=False)
        assert len(ids) == 1, f'{word!r} is {len(ids)} tokens: {tokenizer.tokenize(word)}'


def test_position_phrases_tokenize_word_by_word(tokenizer):
    # "at the top": each word a token, so the position word is one embedding row.
    for position, phrase in POSITION_PHRASES.items():
        assert phrase.split()[-1] == position
        assert len(tokenizer.encode(phrase, add_special_tokens=False)) == len(phrase.split())


def test_lists_as_specified():
    assert SHAPES == ('circle', 'square', 'triangle', 'star', 'cross')
    assert SIZES == ('small', 'large')
    assert POSITIONS == ('left', 'right', 'top', 'bottom', 'center')
    assert PATTERNS == ('plain', 'striped', 'dotted')
    assert len(COLOURS) == 6 and len(BACKGROUNDS) == 4
    assert len(set(COLOURS.values())) == len(COLOURS)
    for rgb in [*COLOURS.values(), *BACKGROUNDS.values()]:
        assert len(rgb) == 3 and all(0 <= c <= 255 for c in rgb)


def test_all_words_unique():
    words = all_words()
    assert len(words) == len(set(words))
    assert 'blue' in words and 'gray' in words
