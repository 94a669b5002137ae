"""Every supported layout: written by mmti, read back identically, told apart by content."""
import pathlib

import pytest
import safetensors
import torch
from safetensors.torch import save_file

from mmti.fileio import read_embedding_file, write_embedding_file


def rows(n: int, dim: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


SINGLE_FORMATS = [('diffusers', 'learned_embeds.safetensors'), ('diffusers', 'learned_embeds.bin'),
                  ('a1111', 'cat-toy.pt'), ('safetensors', 'cat-toy.safetensors')]


@pytest.mark.parametrize('num_vectors', [1, 4])
@pytest.mark.parametrize('fmt, name', SINGLE_FORMATS)
def test_round_trip_single_encoder_formats(tmp_path, fmt, name, num_vectors):
    original = rows(num_vectors)
    path = write_embedding_file(tmp_path / name, {'<cat-toy>': original}, fmt, step=250)
    contents = read_embedding_file(path)
    assert contents.format == fmt
    expected_name = '<cat-toy>' if fmt in ('diffusers', 'a1111', 'safetensors') else None
    assert list(contents.embeddings) == [expected_name]
    assert torch.equal(contents.embeddings['<cat-toy>'], original)
    if not name.endswith('.bin'):  # .bin in diffusers' layout has no room for the step
        assert contents.step == 250


@pytest.mark.parametrize('num_vectors', [1, 3])
def test_round_trip_sdxl_pair(tmp_path, num_vectors):
    clip_l, clip_g = rows(num_vectors, 768), rows(num_vectors, 1280, seed=1)
    path = write_embedding_file(tmp_path / 'cat-toy.safetensors', {'<cat-toy>': clip_l}, 'sdxl',
                                embeddings_2={'<cat-toy>': clip_g}, step=9)
    with safetensors.safe_open(str(path), 'pt') as f:
        assert sorted(f.keys()) == ['clip_g', 'clip_l']  # what A1111/ComfyUI look for
        assert f.metadata()['token'] == '<cat-toy>' and f.metadata()['num_vectors'] == str(num_vectors)
    contents = read_embedding_file(path)
    assert contents.format == 'sdxl' and contents.step == 9
    assert torch.equal(contents.embeddings['<cat-toy>'], clip_l)
    assert torch.equal(contents.embeddings_2['<cat-toy>'], clip_g)


def test_a1111_file_has_the_webui_layout(tmp_path):
    path = write_embedding_file(tmp_path / 'cat-toy.pt', {'<cat-toy>': rows(2)}, 'a1111', step=3000,
                                metadata={'base_model': 'sd15'})
    data = torch.load(path, weights_only=True)
    assert set(data) == {'string_to_token', 'string_to_param', 'name', 'step', 'sd_checkpoint',
                         'sd_checkpoint_name'}
    assert data['string_to_token'] == {'*': 265}
    assert data['string_to_param']['*'].shape == (2, 32)
    assert (data['name'], data['step'], data['sd_checkpoint_name']) == ('<cat-toy>', 3000, 'sd15')


def test_layout_is_detected_by_content_not_extension(tmp_path):
    a1111 = write_embedding_file(tmp_path / 'a.pt', {'<x>': rows(1)}, 'a1111')
    disguised = tmp_path / 'looks_like.safetensors'
    disguised.write_bytes(a1111.read_bytes())
    assert read_embedding_file(disguised).format == 'a1111'
    kohya = tmp_path / 'kohya.bin'
    save_file({'emb_params': rows(2)}, str(kohya))
    contents = read_embedding_file(kohya)
    assert contents.format == 'safetensors' and list(contents.embeddings) == ['kohya']


def test_tokenless_layouts_take_a_given_name(tmp_path):
    path = tmp_path / 'downloaded.safetensors'
    save_file({'emb_params': rows(2)}, str(path))
    assert list(read_embedding_file(path, token='<mine>').embeddings) == ['<mine>']
    pt = write_embedding_file(tmp_path / 'webui.pt', {'old-name': rows(1)}, 'a1111')
    assert list(read_embedding_file(pt).embeddings) == ['old-name']
    assert list(read_embedding_file(pt, token='<new>').embeddings) == ['<new>']


def test_single_concept_layouts_refuse_several(tmp_path):
    with pytest.raises(ValueError, match='one concept per file'):
        write_embedding_file(tmp_path / 'x.pt', {'<a>': rows(1), '<b>': rows(1)}, 'a1111')
    with pytest.raises(ValueError, match='needs clip_g rows'):
        write_embedding_file(tmp_path / 'x.safetensors', {'<a>': rows(1, 768)}, 'sdxl')
    with pytest.raises(ValueError, match="Unknown embedding format 'ckpt'"):
        write_embedding_file(tmp_path / 'x.safetensors', {'<a>': rows(1)}, 'ckpt')


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = write_embedding_file(tmp_path / 'cat-toy.pt', {'<x>': rows(1)}, 'a1111')
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, 'save', crash)
    with pytest.raises(KeyboardInterrupt):
        write_embedding_file(path, {'<x>': rows(1, seed=5)}, 'a1111')
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['cat-toy.pt']


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize('layout', ['diffusers', 'a1111'])
def test_a_pickle_that_runs_code_is_refused(tmp_path, layout):
    marker = tmp_path / 'pwned'
    payload = _RunsCode(str(marker))
    data = ({'<x>': payload} if layout == 'diffusers'
            else {'string_to_token': {'*': 265}, 'string_to_param': {'*': payload}, 'name': 'x'})
    path = tmp_path / 'evil.pt'
    torch.save(data, path)
    with pytest.raises(ValueError, match=r'Refusing to load .*evil.pt.*unsafe.*safetensors'):
        read_embedding_file(path)
    assert not marker.exists()
