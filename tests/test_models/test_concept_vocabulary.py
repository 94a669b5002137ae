"""Adding, loading and unloading concepts is all-or-nothing across every text encoder.

Each refused case checks that the model is exactly as before (tokenizers,
tables, prompt expansion, the ids a prompt gets) and that a later good load
still works, so one bad file can never leave the vocabulary out of step.
"""
import numpy as np
import pytest
import torch
from mmti_testing import REPO_ROOT, build_tiny_model
from safetensors.torch import save_file

import mmti.models  # noqa: F401
from mmti.registry import MODELS

TINY_SDXL = REPO_ROOT / 'data' / 'tiny-sdxl'
PROMPT = 'a <cat-toy> and <kept> on a <x> sofa'


def build_xl():
    return MODELS.build(dict(type='TextualInversionXL', pretrained_model=str(TINY_SDXL),
                             placeholder_token='<cat-toy>', initializer_token='toy'))


def rows(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def state(model) -> tuple:
    """Everything a concept change touches, as comparable values."""
    slots = model.vocabulary.slots
    return (tuple(len(s.tokenizer) for s in slots),
            tuple(tuple(s.tokenizer.get_added_vocab().items()) for s in slots),
            tuple(tuple(s.table.concepts) for s in slots),
            tuple(tuple(r.detach().clone() for r in s.table.rows) for s in slots),
            model.expand_prompt(PROMPT),
            tuple(model.tokenize([PROMPT], s.tokenizer) for s in slots))


def assert_same(a: tuple, b: tuple) -> None:
    assert a[:3] == b[:3] and a[4] == b[4]
    for rows_a, rows_b in zip(a[3], b[3]):
        assert len(rows_a) == len(rows_b) and all(torch.equal(x, y) for x, y in zip(rows_a, rows_b))
    for ids_a, ids_b in zip(a[5], b[5]):
        assert torch.equal(ids_a, ids_b)


@pytest.fixture
def model():
    m = build_tiny_model()
    m.load_embeddings({'<kept>': rows(2, 32, 1)})
    return m


def sd_file(tmp_path, name: str, contents: dict) -> str:
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in contents.items()}, str(path))
    return str(path)


SD_CASES = {
    'wrong rank': (lambda t: {'<x>': torch.zeros(1, 2, 32)}, r"shape \(1, 2, 32\)"),
    'wrong dimension': (lambda t: {'<x>': torch.zeros(1, 768)}, 'dimension 768'),
    'scalar rows': (lambda t: {'<x>': torch.tensor(1.0)}, r'shape \(\)'),
    'string rows': (lambda t: {'<x>': 'not numbers'}, 'not a tensor of numbers'),
    'bool rows': (lambda t: {'<x>': torch.ones(1, 32, dtype=torch.bool)}, 'floating-point'),
    'nan rows': (lambda t: {'<x>': torch.full((1, 32), float('nan'))}, 'NaN or inf'),
    'inf rows in a file': (lambda t: sd_file(t, 'inf.safetensors', {'<x>': torch.full((1, 32), float('inf'))}),
                           'NaN or inf|not finite'),
    'name with a space': (lambda t: {'my concept': torch.zeros(1, 32)}, 'cannot be used in prompts'),
    'empty name': (lambda t: {'': torch.zeros(1, 32)}, 'cannot be used in prompts'),
    'base vocabulary word': (lambda t: {'sofa': torch.zeros(1, 32)}, r"\['sofa'\] are already in the tokenizer"),
    'vector name taken by a concept': (lambda t: {'<kept>_1': torch.zeros(1, 32)}, r"\['<kept>_1'\] are already"),
    'second vector collides': (lambda t: {'<x>': torch.zeros(3, 32), '<x>_2': torch.zeros(1, 32)}, 'used twice'),
    'a loaded name in other letter case': (lambda t: {'<KEPT>': torch.zeros(1, 32)},
                                           "'<KEPT>' is the same as '<kept>'"),
    'two names differing in case': (lambda t: {'<Twin>': torch.zeros(1, 32), '<twin>': torch.zeros(1, 32)},
                                    "'<twin>' is the same as '<Twin>'"),
    'loaded earlier, no replace': (lambda t: {'<kept>': torch.zeros(2, 32)}, "'<kept>' is already loaded"),
    'own placeholder, other shape': (lambda t: {'<cat-toy>': torch.zeros(3, 32)}, 'set num_vectors=3'),
    'good source then bad source': (lambda t: [{'<x>': torch.zeros(1, 32)}, {'<y>': torch.zeros(1, 7)}],
                                    'dimension 7'),
    'same token in two sources': (lambda t: [{'<x>': torch.zeros(1, 32)}, {'<x>': torch.ones(1, 32)}],
                                  "are in both"),
    'sdxl file into SD': (lambda t: sd_file(t, 'xl.safetensors', {'clip_l': torch.zeros(1, 768),
                                                                  'clip_g': torch.zeros(1, 1280)}),
                          'is an SDXL embedding'),
    'corrupt file': (lambda t: (t / 'bad.safetensors').write_bytes(b'\x00' * 9) and str(t / 'bad.safetensors'),
                     'bad.safetensors'),
    'not a file or dict': (lambda t: 42, 'Cannot load embeddings from a int'),
}


@pytest.mark.parametrize('case', list(SD_CASES))
def test_a_refused_load_leaves_every_part_of_the_vocabulary_unchanged(case, model, tmp_path):
    make, message = SD_CASES[case]
    before = state(model)
    with pytest.raises((ValueError, TypeError, OSError), match=message):
        model.load_embeddings(make(tmp_path))
    assert_same(before, state(model))
    # The vocabulary still works: a good load afterwards maps every id to its own rows.
    good = rows(1, 32, 2)
    assert model.load_embeddings({'<x>': good}) == ['<x>']
    ids = model.tokenize(['a <x>'])[0]
    x_id = model.token_embedding.concept_id_range('<x>').start
    assert x_id in ids.tolist()
    assert torch.equal(model.token_embedding(ids[None])[0, ids.tolist().index(x_id)], good[0])


def test_a_failure_half_way_through_applying_is_undone(model, monkeypatch):
    from mmti.models.placeholder_embedding import PlaceholderEmbedding
    real_add = PlaceholderEmbedding.add_concept
    calls = []

    def fail_on_second(self, name, rows, trainable):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError('simulated failure after the first concept was added')
        return real_add(self, name, rows, trainable)

    before = state(model)
    monkeypatch.setattr(PlaceholderEmbedding, 'add_concept', fail_on_second)
    with pytest.raises(RuntimeError, match='simulated'):
        model.load_embeddings([{'<x>': rows(1, 32, 5)}, {'<y>': rows(2, 32, 6)}])
    monkeypatch.undo()
    assert calls == ['<x>', '<y>']
    assert_same(before, state(model))
    model.load_embeddings({'<y>': rows(2, 32, 6)})
    assert model.concepts == ['<cat-toy>', '<kept>', '<y>']


def test_a_word_like_name_matches_only_whole_words(model):
    # A stranger's A1111 file may be named like a piece of a word; prompts
    # with that piece inside ordinary words must tokenize as before.
    ordinary = 'a behemoth in a cathedral'
    before = model.tokenize([ordinary])
    model.load_embeddings({'ehe': rows(1, 32, 3), 'thedr': rows(2, 32, 4)})
    assert model.expand_prompt(ordinary) == ordinary
    assert torch.equal(model.tokenize([ordinary]), before)
    ids = model.tokenize(['an ehe, and (thedr:1.2)'])[0].tolist()
    for name in ('ehe', 'thedr'):
        assert all(i in ids for i in model.token_embedding.concept_id_range(name))
    assert model.expand_prompt('(thedr:1.2)') == '(thedr thedr_1:1.2)'


def test_a_placeholder_in_other_letter_case_is_the_same_concept(model):
    # CLIP lowercases prompts, so '<KEPT>' is '<kept>': all of its vectors.
    assert model.expand_prompt('a <KEPT> sofa') == 'a <kept> <kept>_1 sofa'
    assert torch.equal(model.tokenize(['a <KEPT> sofa']), model.tokenize(['a <kept> sofa']))


def test_numpy_rows_load_as_the_same_numbers(model):
    values = np.random.default_rng(0).standard_normal((2, 32)).astype(np.float32)
    model.load_embeddings({'<np>': values})
    assert torch.equal(model.token_embedding.concept_rows('<np>').detach(), torch.from_numpy(values))


def test_unload_of_an_unknown_token_removes_nothing(model):
    before = state(model)
    with pytest.raises(ValueError, match=r"Cannot unload \['<nope>'\]"):
        model.unload_embeddings(['<kept>', '<nope>'])
    assert_same(before, state(model))


def test_non_finite_rows_are_never_saved(model, tmp_path):
    path = tmp_path / 'learned_embeds.safetensors'
    model.save_embeddings(str(path))
    good = path.read_bytes()
    with torch.no_grad():
        model.token_embedding.concept_rows('<cat-toy>')[0, 3] = float('inf')
    with pytest.raises(ValueError, match='not finite'):
        model.save_embeddings(str(path))
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ['learned_embeds.safetensors']


@pytest.fixture(scope='module')
def xl():
    return build_xl()


L, G = 32, 64  # the tiny SDXL's text encoder widths


def xl_file(tmp_path, name: str, clip_l: torch.Tensor, clip_g: torch.Tensor) -> str:
    return sd_file(tmp_path, name, {'clip_l': clip_l, 'clip_g': clip_g})


XL_CASES = {
    'clip_l and clip_g row counts differ': (
        lambda t: xl_file(t, 'x.safetensors', torch.zeros(2, L), torch.zeros(1, G)),
        'clip_l has 2 vectors but clip_g 1|different vector counts'),
    'diffusers pair with different token names': (
        lambda t: (sd_file(t, 'learned_embeds_2.safetensors', {'<y>': torch.zeros(1, 32)}),
                   sd_file(t, 'learned_embeds.safetensors', {'<x>': torch.zeros(1, 32)}))[1],
        'is not its clip_g half'),
    'one encoder only': (lambda t: sd_file(t, 'one.safetensors', {'<x>': torch.zeros(1, 32)}),
                         'SDXL needs clip_g rows too'),
    'dict without clip_g': (lambda t: {'<x>': torch.zeros(1, 32)}, 'rows for 1 text encoder'),
    'clip_g wrong dimension': (lambda t: {'<x>': (torch.zeros(1, L), torch.zeros(1, 16))},
                               r'\(clip_g\).*dimension 16'),
    'nan in clip_g only': (lambda t: {'<x>': (torch.zeros(1, L), torch.full((1, G), float('nan')))},
                           'NaN or inf'),
    'second concept is a base word': (
        lambda t: {'<x>': (torch.zeros(1, L), torch.zeros(1, G)),
                   'sofa': (torch.zeros(1, L), torch.zeros(1, G))}, 'already in the tokenizer'),
    'vector counts differ in a dict': (lambda t: {'<x>': (torch.zeros(2, L), torch.zeros(1, G))},
                                       'different vector counts'),
}


@pytest.mark.parametrize('case', list(XL_CASES))
def test_sdxl_refused_loads_leave_both_encoders_in_step(case, xl, tmp_path):
    make, message = XL_CASES[case]
    before = state(xl)
    with pytest.raises((ValueError, TypeError), match=message):
        xl.load_embeddings(make(tmp_path))
    assert_same(before, state(xl))
    for slot in xl.vocabulary.slots:
        assert len(slot.tokenizer) == slot.table.num_embeddings


def test_sdxl_good_load_after_a_refused_one(xl):
    pair = (rows(1, L, 3), rows(1, G, 4))
    with pytest.raises(ValueError):
        xl.load_embeddings({'<z>': (pair[0], torch.zeros(2, G))})
    xl.load_embeddings({'<z>': pair})
    assert torch.equal(xl.token_embedding.concept_rows('<z>').detach(), pair[0])
    assert torch.equal(xl.token_embedding_2.concept_rows('<z>').detach(), pair[1])
    xl.unload_embeddings(['<z>'])
    assert xl.concepts == ['<cat-toy>']


def sampling_warnings(model, prompts: list[str]) -> list[str]:
    """The warnings ``model.infer(prompts)`` logs through mmengine's current logger."""
    import logging

    from mmengine.logging import MMLogger
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        model.infer(prompts, num_inference_steps=1, seed=0, show_progress=False)
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in records]


def test_inference_prompts_over_the_limit_warn_with_their_length(model):
    long_prompt = 'a <kept> ' + 'very ' * 80 + 'long prompt'
    assert sampling_warnings(model, [long_prompt, 'a <kept>']) == [
        f'Prompt {long_prompt!r} is 87 tokens (placeholders expanded); the text encoder reads '
        '77, so the end is cut.']


def test_a_placeholder_no_embedding_has_warns_by_name(model):
    assert sampling_warnings(model, ['a <my-mug> beside a <KEPT>', 'a <kept> and <cat-toy>']) == [
        "Prompt 'a <my-mug> beside a <KEPT>' names <my-mug>, which no loaded embedding has "
        '(loaded: <cat-toy>, <kept>); it is read as ordinary words. Load its file first '
        '(--embeddings, load_embeddings).']



def test_a_loaded_name_inside_brackets_or_a_longer_name_is_no_unknown_placeholder(model):
    # An A1111 name without brackets, written with them; a name that goes on
    # past its '>': both are loaded concepts the prompt uses.
    model.load_embeddings({'my-mug': rows(1, 32, 7), '<x>y': rows(1, 32, 8)})
    assert sampling_warnings(model, ['a <my-mug> on a desk', 'a <x>y and <kept>']) == []
