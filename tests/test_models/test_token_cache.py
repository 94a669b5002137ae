"""TokenIdCache: the ids the tokenizer gives, from a bounded cache that never loses a batch's rows."""
import pytest
import torch
from transformers import CLIPTokenizer

from mmti_testing import TINY_SD
from mmti.models.token_cache import TokenIdCache


@pytest.fixture(scope='module')
def tokenizer():
    return CLIPTokenizer.from_pretrained(str(TINY_SD / 'tokenizer'))


def direct(tokenizer, prompts):
    return tokenizer(list(prompts), padding='max_length', max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors='pt').input_ids


def test_ids_are_the_tokenizers_and_repeat_prompts_are_not_retokenised(tokenizer):
    cache = TokenIdCache()
    prompts = ['a photo of a cat', 'a dog', 'a photo of a cat']
    assert torch.equal(cache(tokenizer, prompts), direct(tokenizer, prompts))
    assert len(cache) == 2
    assert torch.equal(cache(tokenizer, prompts[:1]), direct(tokenizer, prompts[:1]))
    assert len(cache) == 2


def test_expand_rewrites_before_tokenising(tokenizer):
    ids = TokenIdCache()(tokenizer, ['a <x>'], expand=lambda p: p.replace('<x>', 'red car'))
    assert torch.equal(ids, direct(tokenizer, ['a red car']))


def test_a_full_cache_starts_afresh_without_losing_the_batch(tokenizer):
    # The batch mixes cached prompts and new ones that overflow the limit: its
    # cached rows must survive the reset (a KeyError here once stopped a
    # pretraining run after 4096 distinct captions).
    cache = TokenIdCache(limit=3)
    cache(tokenizer, ['one', 'two', 'three'])
    batch = ['two', 'four', 'one', 'five']
    assert torch.equal(cache(tokenizer, batch), direct(tokenizer, batch))
    assert len(cache) == 4  # exactly this batch's prompts
    for step in range(20):  # a long open-ended stream stays bounded by limit + batch
        prompts = [f'prompt {step} {i}' for i in range(2)] + ['one']
        assert torch.equal(cache(tokenizer, prompts), direct(tokenizer, prompts))
        assert len(cache) <= 3 + len(prompts)


def test_each_tokenizer_has_its_own_ids(tokenizer):
    other = CLIPTokenizer.from_pretrained(str(TINY_SD / 'tokenizer'))
    other.add_tokens(['<new>'])
    cache = TokenIdCache()
    mine, theirs = cache(tokenizer, ['a <new>']), cache(other, ['a <new>'])
    assert not torch.equal(mine, theirs)
    assert torch.equal(theirs, direct(other, ['a <new>']))
