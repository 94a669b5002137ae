"""Toy-world vocabulary: every attribute word is one token of SD's CLIP tokenizer."""
import pytest
from transformers import CLIPTokenizer

from projects.toy_world.world import BACKGROUNDS, COLOURS, POSITION_PHRASES, all_words
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


def test_colours_are_distinct_rgb_triples():
    assert len(set(COLOURS.values())) == len(COLOURS)
    for rgb in [*COLOURS.values(), *BACKGROUNDS.values()]:
        assert len(rgb) == 3 and all(0 <= c <= 255 for c in rgb)


def test_all_words_unique():
    words = all_words()
    assert len(words) == len(set(words))
    assert 'blue' in words and 'gray' in words
