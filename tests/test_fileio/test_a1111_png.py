"""A1111's embedding PNGs (text chunk and pixel strips) read as plain data."""
import base64
import io
import pickle

import pytest
import torch
from a1111_png_writer import (A1111_STREAM_START, a1111_dict, lcg_values, pixel_embedding_png,
                              picture, text_chunk_embedding_png, text_chunk_png, to_json)

from mmti.fileio import read_embedding_file
from mmti.fileio.a1111_png import _key_stream


def rows(n: int = 3, dim: int = 768, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_key_stream_is_a1111s():
    assert lcg_values(10) == A1111_STREAM_START
    assert _key_stream(10).tolist() == [v & 0x0F for v in A1111_STREAM_START]


@pytest.mark.parametrize('chunk', ['tEXt', 'zTXt', 'iTXt'])
def test_text_chunk_rows_bit_for_bit(chunk, tmp_path):
    path = text_chunk_embedding_png(tmp_path / 'cat-toy-500.png', a1111_dict(rows()), chunk)
    contents = read_embedding_file(path)
    assert contents.format == 'a1111' and contents.step == 500
    assert list(contents.embeddings) == ['cat-toy']  # A1111 names it by its 'name' field
    assert torch.equal(contents.embeddings['cat-toy'], rows())


def test_pixel_strips_rows_bit_for_bit(tmp_path):
    path = pixel_embedding_png(tmp_path / 'cat.png', a1111_dict(rows(2, 64, seed=3)))
    contents = read_embedding_file(path, token='<cat>')
    assert contents.step == 500
    assert torch.equal(contents.embeddings['<cat>'], rows(2, 64, seed=3))


def test_text_chunk_wins_over_pixels(tmp_path):
    """A1111 reads the chunk when there is one, as here."""
    pixels = tmp_path / 'pixels.png'
    pixel_embedding_png(pixels, a1111_dict(rows(1, 32, seed=1)))
    from PIL import Image
    with Image.open(pixels) as image:
        both = text_chunk_png(tmp_path / 'both.png', base64.b64encode(
            to_json(a1111_dict(rows(1, 32, seed=2))).encode()), image=image.copy())
    assert torch.equal(read_embedding_file(both).embeddings['cat-toy'], rows(1, 32, seed=2))


def test_sdxl_and_diffusers_layouts_in_a_png(tmp_path):
    sdxl = text_chunk_embedding_png(tmp_path / 'xl.png', {'clip_l': rows(2, 768),
                                                          'clip_g': rows(2, 1280, seed=1)})
    contents = read_embedding_file(sdxl)
    assert contents.format == 'sdxl' and list(contents.embeddings) == ['xl']
    assert torch.equal(contents.embeddings_2['xl'], rows(2, 1280, seed=1))
    plain = pixel_embedding_png(tmp_path / 'd.png', {'<d>': rows(1, 32)})
    assert torch.equal(read_embedding_file(plain).embeddings['<d>'], rows(1, 32))


def _torch_file(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class Boom:
    def __reduce__(self):
        return (print, ('pwned',))


BAD_CHUNKS = {
    'not base64': ('not base64 at all!', r'text chunk is not base64'),
    'base64 of text': (base64.b64encode(b'hello'), r'is not the JSON A1111 writes'),
    'a pickle': (base64.b64encode(pickle.dumps(Boom())), r'holds a pickle or torch file'),
    'a torch file': (base64.b64encode(_torch_file(a1111_dict(rows(1, 8)))),
                     r'holds a pickle or torch file'),
    'a JSON list': (base64.b64encode(b'[1, 2]'), r'holds a JSON list, not an embedding'),
    'ragged tensor': (base64.b64encode(b'{"x": {"TORCHTENSOR": [[1, 2], [3]]}}'),
                      r'is not the JSON A1111 writes'),
    'text in a tensor': (base64.b64encode(b'{"x": {"TORCHTENSOR": [["a"]]}}'),
                         r'is not the JSON A1111 writes'),
    'NaN rows': (base64.b64encode(b'{"<x>": {"TORCHTENSOR": [[NaN, 1.0]]}}'),
                 r'NaN or infinite'),
}


@pytest.mark.parametrize('case', list(BAD_CHUNKS))
def test_bad_text_chunk_is_refused_in_one_line(case, tmp_path, capsys):
    payload, pattern = BAD_CHUNKS[case]
    path = text_chunk_png(tmp_path / 'bad.png', payload)
    with pytest.raises(ValueError, match=pattern) as info:
        read_embedding_file(path)
    assert '\n' not in str(info.value) and str(path) in str(info.value)
    assert 'pwned' not in capsys.readouterr().out


def test_pickle_in_the_pixels_is_refused(tmp_path, capsys):
    path = pixel_embedding_png(tmp_path / 'bad.png', pickle.dumps(Boom()))
    with pytest.raises(ValueError, match=r'the data in its pixels holds a pickle'):
        read_embedding_file(path)
    assert 'pwned' not in capsys.readouterr().out


def test_plain_and_damaged_pictures_are_refused(tmp_path):
    plain = tmp_path / 'photo.png'
    picture().save(plain)
    with pytest.raises(ValueError, match=r'photo.png is a PNG without an embedding'):
        read_embedding_file(plain)
    cut = tmp_path / 'cut.png'
    cut.write_bytes(plain.read_bytes()[:60])
    with pytest.raises(ValueError, match=r'cut.png is a damaged PNG'):
        read_embedding_file(cut)


def test_read_embedding_pair(tmp_path):
    from mmti.fileio import read_embedding_pair, second_file, write_embedding_file
    first = write_embedding_file(tmp_path / 'learned_embeds.safetensors', {'<a>': rows(1, 8)})
    assert second_file(first) == second_file(tmp_path) == tmp_path / 'learned_embeds_2.safetensors'
    assert read_embedding_pair(first).embeddings_2 == {}  # a lone file, as it is
    write_embedding_file(second_file(first), {'<a>': rows(1, 16, seed=1)})
    assert torch.equal(read_embedding_pair(tmp_path).embeddings_2['<a>'], rows(1, 16, seed=1))
    # Only the second encoder's rows of the same concepts make a pair: an
    # A1111 folder's unrelated "style" and "style_2" stay two embeddings.
    for unrelated in ({'<b>': rows(1, 16)}, {'<a>': rows(1, 8, seed=1)}, {'<a>': rows(2, 16)}):
        write_embedding_file(second_file(first), unrelated, metadata=None)
        assert read_embedding_pair(first).embeddings_2 == {}
    second_file(first).write_bytes(b'not an embedding')
    assert read_embedding_pair(first).embeddings_2 == {}


def test_the_second_file_of_a_pair_given_alone_is_named(tmp_path):
    from mmti.fileio import clip_g_half_problem, second_file, write_embedding_file
    first = write_embedding_file(tmp_path / 'style.safetensors', {'<a>': rows(2, 8)})
    second = second_file(first)
    write_embedding_file(second, {'<a>': rows(2, 16, seed=1)})
    assert clip_g_half_problem(second) == (
        f'{second} is the clip_g half of the SDXL embedding style.safetensors + '
        f'style_2.safetensors; load {first} (with an SDXL model), which reads '
        'style_2.safetensors from beside it')
    assert clip_g_half_problem(second, verb='convert', where='').endswith(
        f'; convert {first}, which reads style_2.safetensors from beside it')
    assert clip_g_half_problem(first) is None
    # A1111's unrelated "style" and "style_2" (other concepts, row counts, or not wider).
    for unrelated in ({'<b>': rows(2, 16)}, {'<a>': rows(1, 16)}, {'<a>': rows(2, 8, seed=1)}):
        write_embedding_file(second, unrelated, metadata=None)
        assert clip_g_half_problem(second) is None
    first.unlink()
    write_embedding_file(second, {'<a>': rows(2, 16, seed=1)})
    assert clip_g_half_problem(second) is None  # no first file


@pytest.mark.parametrize('fmt, suffix', [('a1111', '.pt'), ('safetensors', '.safetensors')])
def test_one_encoder_layouts_never_make_a_pair(fmt, suffix, tmp_path):
    # A1111 and kohya keep SDXL's two encoders in one file: their "style" and
    # "style_2" are two embeddings, even with the same inner name, and renaming
    # them (token=) must not make them one.
    from mmti.fileio import clip_g_half_problem, read_embedding_pair, write_embedding_file
    first = write_embedding_file(tmp_path / f'style{suffix}', {'style': rows(1, 8)}, fmt)
    second = write_embedding_file(tmp_path / f'style_2{suffix}', {'style': rows(1, 16)}, fmt)
    assert clip_g_half_problem(second) is None
    for token in (None, '<q>'):
        assert read_embedding_pair(first, token=token).embeddings_2 == {}


def test_a_pair_is_judged_on_its_own_names_before_a_rename(tmp_path):
    from mmti.fileio import read_embedding_pair, write_embedding_file
    first = write_embedding_file(tmp_path / 'a.safetensors', {'<a>': rows(1, 8)})
    second = write_embedding_file(tmp_path / 'a_2.safetensors', {'<b>': rows(1, 16)})
    assert read_embedding_pair(first, token='<q>').embeddings_2 == {}  # other concepts
    write_embedding_file(second, {'<a>': rows(1, 16)})
    renamed = read_embedding_pair(first, token='<q>')
    assert list(renamed.embeddings) == list(renamed.embeddings_2) == ['<q>']


def test_a_compressed_chunk_pil_refuses_is_one_line(tmp_path, monkeypatch):
    from PIL import PngImagePlugin
    monkeypatch.setattr(PngImagePlugin, 'MAX_TEXT_CHUNK', 1000)  # as a > 1 MB zTXt meets it
    path = text_chunk_embedding_png(tmp_path / 'big.png', a1111_dict(rows(1, 768)), 'zTXt')
    with pytest.raises(ValueError, match=r'big.png is a damaged PNG, or one PIL refuses') as info:
        read_embedding_file(path)
    assert '\n' not in str(info.value)
