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
    with pytest.raises(ValueError, match='cannot become one'):
        convert.main([str(written[0]), str(tmp_path / 'x.safetensors'), '--to', 'sdxl'])


def test_token_renames_or_selects(tmp_path):
    convert = load_tool('convert_embeddings')
    two = write_embedding_file(tmp_path / 'two.safetensors', {'<a>': rows(1), '<b>': rows(2, seed=1)})
    with pytest.raises(ValueError, match=r"holds \['<a>', '<b>'\]; the a1111 layout takes one"):
        convert.main([str(two), str(tmp_path / 'x.pt')])
    convert.main([str(two), str(tmp_path / 'b.pt'), '--token', '<b>'])
    assert torch.equal(read_embedding_file(tmp_path / 'b.pt').embeddings['<b>'], rows(2, seed=1))
    convert.main([str(tmp_path / 'b.pt'), str(tmp_path / 'renamed.safetensors'), '--token', '<c>'])
    assert list(read_embedding_file(tmp_path / 'renamed.safetensors').embeddings) == ['<c>']


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
