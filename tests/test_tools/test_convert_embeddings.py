"""tools/convert_embeddings.py between every layout, safely."""
import pathlib

import pytest
import torch
from tool_runner import load_tool, run_tool

from mmti.fileio import read_embedding_file, write_embedding_file


def rows(n: int, dim: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_chain_of_conversions_is_lossless(tmp_path):
    convert = load_tool('convert_embeddings')
    start = write_embedding_file(tmp_path / 'learned_embeds.safetensors', {'<cat-toy>': rows(3)},
                                 step=42)
    convert.main([str(start), str(tmp_path / 'cat-toy.pt')])  # .pt -> a1111
    convert.main([str(tmp_path / 'cat-toy.pt'), str(tmp_path / 'kohya.safetensors'),
                  '--to', 'safetensors'])
    convert.main([str(tmp_path / 'kohya.safetensors'), str(tmp_path / 'back.bin')])
    a1111 = read_embedding_file(tmp_path / 'cat-toy.pt')
    kohya = read_embedding_file(tmp_path / 'kohya.safetensors')
    back = read_embedding_file(tmp_path / 'back.bin')
    assert (a1111.format, kohya.format, back.format) == ('a1111', 'safetensors', 'diffusers')
    assert a1111.step == kohya.step == 42
    for contents in (a1111, kohya, back):
        assert torch.equal(contents.embeddings['<cat-toy>'], rows(3))


def test_sdxl_to_diffusers_writes_the_pair_and_back(tmp_path):
    convert = load_tool('convert_embeddings')
    sdxl = write_embedding_file(tmp_path / 'sdxl.safetensors', {'<s>': rows(2, 768)}, 'sdxl',
                                embeddings_2={'<s>': rows(2, 1280, seed=1)})
    written = convert.main([str(sdxl), str(tmp_path / 'learned_embeds.safetensors')])
    assert [p.name for p in written] == ['learned_embeds.safetensors', 'learned_embeds_2.safetensors']
    assert torch.equal(read_embedding_file(written[0]).embeddings['<s>'], rows(2, 768))
    assert torch.equal(read_embedding_file(written[1]).embeddings['<s>'], rows(2, 1280, seed=1))
    again = convert.main([str(written[0]), str(tmp_path / 'again.safetensors'), '--to', 'sdxl'])
    assert again[0].read_bytes() == sdxl.read_bytes()


def diffusers_pair(folder, dims=(768, 1280), token='<cat-toy>'):
    folder.mkdir(exist_ok=True)
    first = write_embedding_file(folder / 'learned_embeds.safetensors', {token: rows(2, dims[0])},
                                 step=7)
    write_embedding_file(folder / 'learned_embeds_2.safetensors', {token: rows(2, dims[1], seed=1)})
    return first


def test_the_second_file_of_a_pair_alone_is_refused(tmp_path, capsys):
    first = diffusers_pair(tmp_path / 'run')
    with pytest.raises(SystemExit) as info:
        load_tool('convert_embeddings').cli([str(first.parent / 'learned_embeds_2.safetensors'),
                                             str(tmp_path / 'xl.safetensors'), '--to', 'sdxl'])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert ('learned_embeds_2.safetensors is the clip_g half of the SDXL embedding '
            'learned_embeds.safetensors + learned_embeds_2.safetensors; convert ') in err
    assert not (tmp_path / 'xl.safetensors').exists()


@pytest.mark.parametrize('given', ['first file', 'folder'])
def test_diffusers_pair_becomes_one_sdxl_file(given, tmp_path):
    first = diffusers_pair(tmp_path / 'run')
    src = first if given == 'first file' else first.parent
    out = load_tool('convert_embeddings').main([str(src), str(tmp_path / 'xl.safetensors'),
                                                '--to', 'sdxl'])
    assert out == [tmp_path / 'xl.safetensors']
    contents = read_embedding_file(out[0])
    assert (contents.format, contents.step) == ('sdxl', 7)
    assert torch.equal(contents.embeddings['<cat-toy>'], rows(2, 768))
    assert torch.equal(contents.embeddings_2['<cat-toy>'], rows(2, 1280, seed=1))


def test_pair_converted_sdxl_file_loads_into_the_sdxl_model(tmp_path):
    import mmti.models  # noqa: F401
    from mmti_testing import REPO_ROOT
    from mmti.registry import MODELS
    first = diffusers_pair(tmp_path / 'run', dims=(32, 64))  # tiny-sdxl's encoder widths
    out = tmp_path / 'cat-toy-xl.safetensors'
    load_tool('convert_embeddings').main([str(first), str(out), '--to', 'sdxl'])
    model = MODELS.build(dict(type='TextualInversionXL',
                              pretrained_model=str(REPO_ROOT / 'data' / 'tiny-sdxl'),
                              placeholder_token='<x>', initializer_token='toy'))
    assert model.load_embeddings(str(out)) == ['<cat-toy>']  # the token travels in the file
    slots = model.get_slot_embeddings(['<cat-toy>'])
    assert torch.equal(slots[0]['<cat-toy>'], rows(2, 32))
    assert torch.equal(slots[1]['<cat-toy>'], rows(2, 64, seed=1))


@pytest.mark.parametrize('src_kind', ['pair', 'sdxl file'])
def test_one_encoder_layout_from_sdxl_needs_first_encoder_only(src_kind, tmp_path):
    convert = load_tool('convert_embeddings')
    src = diffusers_pair(tmp_path / 'run')
    if src_kind == 'sdxl file':
        src = convert.main([str(src), str(tmp_path / 'xl.safetensors'), '--to', 'sdxl'])[0]
    kind = 'the first file of an SDXL pair' if src_kind == 'pair' else 'an SDXL file'
    with pytest.raises(ValueError, match=rf'is {kind}.*768\+1280 \(SDXL clip_l \+ clip_g\).*'
                                         r'--to sdxl.*--first-encoder-only'):
        convert.main([str(src), str(tmp_path / 'x.pt')])
    assert not (tmp_path / 'x.pt').exists()
    written = convert.main([str(src), str(tmp_path / 'x.pt'), '--first-encoder-only'])
    assert written == [tmp_path / 'x.pt']
    assert torch.equal(read_embedding_file(written[0], token='<c>').embeddings['<c>'], rows(2, 768))


def test_pair_to_diffusers_keeps_both_files(tmp_path):
    first = diffusers_pair(tmp_path / 'run')
    written = load_tool('convert_embeddings').main([str(first), str(tmp_path / 'copy.bin')])
    assert [p.name for p in written] == ['copy.bin', 'copy_2.bin']
    second = read_embedding_file(written[1]).embeddings['<cat-toy>']
    assert torch.equal(second, rows(2, 1280, seed=1))


def test_lone_first_file_to_sdxl_names_what_is_missing(tmp_path, capsys):
    first = diffusers_pair(tmp_path / 'run')
    (tmp_path / 'run' / 'learned_embeds_2.safetensors').unlink()
    with pytest.raises(SystemExit) as info:
        load_tool('convert_embeddings').cli([str(first), str(tmp_path / 'x.safetensors'),
                                             '--to', 'sdxl'])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'SD 1.x/2.x embedding' not in err
    assert ('one text encoder only, of dimension 768 (SD 1.x (or SDXL clip_l))' in err
            and 'put its learned_embeds_2.safetensors beside it' in err)


def test_a_same_width_underscore_2_file_is_its_own_embedding(tmp_path):
    # "cat" and "cat_2" side by side, both SD 1.x rows (the user's own copy,
    # or two A1111 embeddings): neither is an SDXL pair, each converts alone.
    convert = load_tool('convert_embeddings')
    cat = write_embedding_file(tmp_path / 'cat.safetensors', {'<cat-toy>': rows(2)})
    convert.main([str(cat), str(tmp_path / 'cat_2.safetensors')])
    out = convert.main([str(cat), str(tmp_path / 'again.pt')])
    assert torch.equal(read_embedding_file(out[0]).embeddings['<cat-toy>'], rows(2))
    with pytest.raises(ValueError, match='one text encoder only'):
        convert.main([str(cat), str(tmp_path / 'xl.safetensors'), '--to', 'sdxl'])
    assert not (tmp_path / 'xl.safetensors').exists()


def test_a1111_png_converts(tmp_path):
    import base64
    import json

    from PIL import Image, PngImagePlugin
    info = PngImagePlugin.PngInfo()
    dump = json.dumps({'string_to_param': {'*': {'TORCHTENSOR': rows(2).tolist()}},
                       'name': 'cat-toy', 'step': 9})
    info.add_text('sd-ti-embedding', base64.b64encode(dump.encode()).decode())
    Image.new('RGB', (8, 8), (9, 9, 9)).save(tmp_path / 'cat-toy.png', pnginfo=info)
    out = load_tool('convert_embeddings').main([str(tmp_path / 'cat-toy.png'),
                                                str(tmp_path / 'learned_embeds.safetensors')])
    contents = read_embedding_file(out[0])
    assert contents.step == 9 and torch.equal(contents.embeddings['cat-toy'], rows(2))


def test_token_renames_or_selects(tmp_path):
    convert = load_tool('convert_embeddings')
    two = write_embedding_file(tmp_path / 'two.safetensors', {'<a>': rows(1), '<b>': rows(2, seed=1)})
    with pytest.raises(ValueError, match=r"holds \['<a>', '<b>'\]; the a1111 layout takes one"):
        convert.main([str(two), str(tmp_path / 'x.pt')])
    convert.main([str(two), str(tmp_path / 'b.pt'), '--token', '<b>'])
    assert torch.equal(read_embedding_file(tmp_path / 'b.pt').embeddings['<b>'], rows(2, seed=1))
    convert.main([str(tmp_path / 'b.pt'), str(tmp_path / 'renamed.safetensors'), '--token', '<c>'])
    assert list(read_embedding_file(tmp_path / 'renamed.safetensors').embeddings) == ['<c>']
    # diffusers' load_textual_inversion reads one concept a file, as A1111 does.
    with pytest.raises(ValueError, match=r"holds \['<a>', '<b>'\]; the diffusers layout takes one"):
        convert.main([str(two), str(tmp_path / 'both.safetensors')])
    with pytest.raises(ValueError, match=r"token name 'my concept' has spaces"):
        convert.main([str(tmp_path / 'b.pt'), str(tmp_path / 'spaced.pt'), '--token', 'my concept'])
    assert not (tmp_path / 'both.safetensors').exists() and not (tmp_path / 'spaced.pt').exists()


def test_an_output_that_is_a_folder_is_named_as_one(tmp_path, capsys, monkeypatch):
    start = write_embedding_file(tmp_path / 'learned_embeds.safetensors', {'<cat-toy>': rows(1)})
    (tmp_path / 'sub').mkdir()
    monkeypatch.chdir(tmp_path)
    for folder in ('.', 'sub', '..'):
        with pytest.raises(SystemExit):
            load_tool('convert_embeddings').cli([str(start), folder])
        err = capsys.readouterr().err.strip()
        assert f'Output {folder} is a folder; give a file name inside it' in err, err


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    convert = load_tool('convert_embeddings')
    src = write_embedding_file(tmp_path / 'in.safetensors', {'<a>': rows(1)})
    out = tmp_path / 'out.pt'
    out.write_bytes(b'precious')
    with pytest.raises(SystemExit) as info:
        convert.cli([str(src), str(out)])
    assert info.value.code == 2
    assert 'exists; pass --force' in capsys.readouterr().err
    assert out.read_bytes() == b'precious'
    convert.main([str(src), str(out), '--force'])
    assert read_embedding_file(out).format == 'a1111'


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_cli_refuses_a_malicious_pickle(tmp_path):
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pt'
    torch.save({'string_to_token': {'*': 265}, 'string_to_param': {'*': _RunsCode(str(marker))},
                'name': 'x'}, evil)
    result = run_tool('tools/convert_embeddings.py', str(evil), str(tmp_path / 'out.safetensors'),
                      check=False)
    assert result.returncode != 0
    assert 'Refusing to load' in result.stderr and 'safetensors' in result.stderr
    assert not marker.exists() and not (tmp_path / 'out.safetensors').exists()
