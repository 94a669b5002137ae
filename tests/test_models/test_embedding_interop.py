"""Embeddings that travel: other tools' files in, mmti's files out, several concepts at once."""
import pytest
import torch
from diffusers import StableDiffusionPipeline
from mmti_testing import TINY_SD, build_tiny_model
from safetensors.torch import save_file
from transformers import CLIPTokenizer

from mmti.fileio import write_embedding_file


def distinctive(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('fmt, name', [('diffusers', 'learned_embeds.safetensors'),
                                       ('diffusers', 'learned_embeds.bin'),
                                       ('a1111', 'cat-toy.pt'),
                                       (None, 'cat-toy.pt')])  # the name asks for A1111's
def test_files_written_by_mmti_load_into_diffusers_with_identical_outputs(tmp_path, fmt, name):
    model = build_tiny_model(num_vectors=2)
    with torch.no_grad():
        model.token_embedding.concept_rows('<cat-toy>').copy_(distinctive(2, 3))
    path = model.save_embeddings(str(tmp_path / name), format=fmt, step=10)

    pipe = StableDiffusionPipeline.from_pretrained(str(TINY_SD))
    pipe.load_textual_inversion(path)  # diffusers reads the A1111 'name' as the token
    prompt = 'a <cat-toy> in a garden'
    ids = pipe.tokenizer(pipe.maybe_convert_prompt(prompt, pipe.tokenizer), padding='max_length',
                         max_length=77, truncation=True, return_tensors='pt').input_ids
    with torch.no_grad():
        assert torch.allclose(pipe.text_encoder(ids)[0], model.encode_prompt([prompt]), atol=1e-6)

    fresh = build_tiny_model(num_vectors=2)
    assert fresh.load_embeddings(path) == ['<cat-toy>']
    assert torch.equal(fresh.token_embedding.concept_rows('<cat-toy>'), distinctive(2, 3))


def test_two_concepts_in_one_prompt_both_take_effect(tmp_path):
    model = build_tiny_model()
    style = write_embedding_file(tmp_path / 'my-style.pt', {'<my-style>': distinctive(2, 1)}, 'a1111')
    toy = tmp_path / 'kohya-concept.safetensors'
    save_file({'emb_params': distinctive(1, 2)}, str(toy))
    assert model.load_embeddings([style, toy]) == ['<my-style>', 'kohya-concept']
    model.load_embeddings({'<cat-toy>': distinctive(1, 4)})
    prompt = 'a <cat-toy> in the style of <my-style>'
    ids = model.tokenize([prompt])[0]
    first = model.token_embedding.first_new_id
    assert (ids == first).sum() == 1 and (ids == first + 1).sum() == 1 and (ids == first + 2).sum() == 1

    with torch.no_grad():
        both = model.encode_prompt([prompt])
        toy_only = model.encode_prompt(['a <cat-toy> in the style of painting'])
        style_only = model.encode_prompt(['a toy in the style of <my-style>'])
        assert not torch.allclose(both, toy_only) and not torch.allclose(both, style_only)
        # Each concept's own rows are what the prompt uses: change one, the output follows.
        for name in ('<cat-toy>', '<my-style>'):
            rows = model.token_embedding.concept_rows(name)
            saved = rows.clone()
            rows.add_(1.0)
            assert not torch.allclose(model.encode_prompt([prompt]), both)
            rows.copy_(saved)
        assert torch.equal(model.encode_prompt([prompt]), both)


def test_unloading_several_apart_at_once_closes_every_gap():
    model = build_tiny_model()
    model.load_embeddings({name: distinctive(n, seed) for seed, (name, n) in
                           enumerate([('<a>', 2), ('<b>', 1), ('<c>', 3), ('<d>', 2)])})
    model.unload_embeddings(['<c>', '<a>'])
    fresh = build_tiny_model()
    fresh.load_embeddings({'<b>': distinctive(1, 1), '<d>': distinctive(2, 3)})
    prompt = ['a <b> beside <d> and <cat-toy>']
    assert model.tokenize(prompt).tolist() == fresh.tokenize(prompt).tolist()
    with torch.no_grad():
        assert torch.equal(model.encode_prompt(prompt), fresh.encode_prompt(prompt))


def test_unload_restores_the_original_table_and_tokenizer():
    model = build_tiny_model(num_vectors=2)
    reference = build_tiny_model(num_vectors=2)
    original_table = model.token_embedding.base.weight[:49408].clone()
    model.load_embeddings({'<a>': distinctive(3, 1), '<b>': distinctive(1, 2), '<c>': distinctive(2, 3)})
    assert len(model.tokenizer) == 49408 + 2 + 3 + 1 + 2

    model.unload_embeddings(['<b>'])  # from the middle: later ids close up
    assert model.concepts == ['<cat-toy>', '<a>', '<c>'] and len(model.tokenizer) == 49408 + 7
    c_ids = list(model.token_embedding.concept_id_range('<c>'))
    assert model.tokenizer.convert_tokens_to_ids(['<c>', '<c>_1']) == c_ids
    assert model.tokenize(['a <c> x'])[0, 2:4].tolist() == c_ids
    with torch.no_grad():  # <c>'s own rows are still the ones used
        assert torch.equal(model.text_encoder.get_input_embeddings()(torch.tensor([c_ids]))[0],
                           distinctive(2, 3))

    model.unload_embeddings(['<a>', '<c>'])
    with torch.no_grad():
        assert torch.equal(model.encode_prompt(['a <cat-toy> bag']),
                           reference.encode_prompt(['a <cat-toy> bag']))
    model.unload_embeddings()
    assert model.concepts == [] and len(model.tokenizer) == 49408
    assert torch.equal(model.token_embedding.full_table(), original_table)
    pristine = CLIPTokenizer.from_pretrained(TINY_SD / 'tokenizer')
    assert model.tokenize(['a <cat-toy> bag']).tolist() == \
        pristine(['a <cat-toy> bag'], padding='max_length', max_length=77,
                 return_tensors='pt').input_ids.tolist()
    with pytest.raises(ValueError, match=r"Cannot unload \['<zzz>'\]"):
        model.unload_embeddings(['<zzz>'])


def test_dimension_mismatch_names_both_dims(tmp_path):
    model = build_tiny_model()
    sd2 = write_embedding_file(tmp_path / 'sd2.pt', {'<x>': torch.zeros(1, 1024)}, 'a1111')
    with pytest.raises(ValueError, match=r'dimension 1024 \(SD 2.x\), but this text encoder uses '
                                         r'dimension 32; it was made for another base model'):
        model.load_embeddings(sd2)
    sdxl = write_embedding_file(tmp_path / 'xl.safetensors', {'<x>': torch.zeros(1, 768)}, 'sdxl',
                                embeddings_2={'<x>': torch.zeros(1, 1280)})
    with pytest.raises(ValueError, match=r'is an SDXL embedding .*one text encoder of dimension 32'):
        model.load_embeddings(sdxl)
    assert model.concepts == ['<cat-toy>'] and len(model.tokenizer) == 49409


def test_duplicate_and_vocabulary_tokens_are_refused(tmp_path):
    model = build_tiny_model()
    model.load_embeddings({'<a>': torch.zeros(1, 32)})
    with pytest.raises(ValueError, match="'<a>' is already loaded; pass replace=True"):
        model.load_embeddings({'<a>': torch.ones(1, 32)})
    with pytest.raises(ValueError, match=r"\['cat'\] are already in the tokenizer vocabulary"):
        model.load_embeddings({'cat': torch.ones(1, 32)})


def test_training_can_start_from_an_existing_embedding(tmp_path):
    earlier = write_embedding_file(tmp_path / 'earlier.pt', {'<old>': distinctive(2, 7)}, 'a1111')
    model = build_tiny_model(num_vectors=2, initial_embedding=str(earlier), initializer_token=None)
    rows = model.token_embedding.concept_rows('<cat-toy>')
    assert rows.requires_grad and torch.equal(rows, distinctive(2, 7))
    assert '<old>' not in model.concepts  # its rows seed <cat-toy>; the old name is not added
    with pytest.raises(ValueError, match='has 2 vector\\(s\\) for .*set num_vectors=2'):
        build_tiny_model(num_vectors=1, initial_embedding=str(earlier))
    with pytest.raises(ValueError, match='Set initializer_token .* or initial_embedding'):
        build_tiny_model(initializer_token=None)
