"""Embedding files: diffusers' {"<tok>": rows} layout, told by content, loaded without code."""
import os
import pathlib

import pytest
import safetensors.torch
import torch
from safetensors import safe_open

from mmti.fileio import read_embedding_file, write_embedding_file



def rows(n: int, dim: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


class TouchOnLoad:
    """Unpickling this calls ``Path.touch(marker)``: code run by merely loading a file."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.mark.parametrize('num_vectors', [1, 3])
def test_round_trip_is_bitwise(tmp_path, num_vectors):
    embeddings = {'<cat-toy>': rows(num_vectors), '<other>': rows(2, seed=1)}
    path = write_embedding_file(tmp_path / 'learned_embeds.safetensors', embeddings, step=7)
    loaded = read_embedding_file(path).embeddings
    assert list(loaded) == ['<cat-toy>', '<other>']
    for token, expected in embeddings.items():
        assert loaded[token].dtype == torch.float32
        assert loaded[token].shape == (expected.shape[0], 32)
        assert torch.equal(loaded[token], expected)
    # A real safetensors file that diffusers' loader can read, metadata included.
    with safe_open(str(path), 'pt') as f:
        meta = f.metadata()
        assert meta['step'] == '7' and meta['format'] == 'diffusers'
        assert meta['token'] == '<cat-toy>,<other>' and meta['num_vectors'] == f'{num_vectors},2'
        assert sorted(f.keys()) == ['<cat-toy>', '<other>']


def test_write_stores_float32_copies(tmp_path):
    half = rows(2).half()
    path = write_embedding_file(tmp_path / 'e.safetensors', {'<x>': half})
    loaded = read_embedding_file(path).embeddings['<x>']
    assert loaded.dtype == torch.float32
    assert torch.equal(loaded, half.float())
    assert safetensors.torch.load_file(path)['<x>'].dtype == torch.float32
    assert not list(tmp_path.glob('.*'))  # the atomic write left no temp file


def test_safetensors_named_bin_loads(tmp_path):
    path = tmp_path / 'learned_embeds.bin'
    safetensors.torch.save_file({'<x>': rows(2)}, str(path))
    assert torch.equal(read_embedding_file(path).embeddings['<x>'], rows(2))


def test_torch_saved_dict_named_safetensors_loads(tmp_path):
    path = tmp_path / 'learned_embeds.safetensors'
    torch.save({'<x>': rows(2).half()}, path)
    loaded = read_embedding_file(path).embeddings['<x>']
    assert loaded.dtype == torch.float32 and torch.equal(loaded, rows(2).half().float())


def test_legacy_torch_format_loads(tmp_path):
    path = tmp_path / 'old.pt'
    torch.save({'<x>': rows(1)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(read_embedding_file(path).embeddings['<x>'], rows(1))


def test_folder_loads_learned_embeds(tmp_path):
    write_embedding_file(tmp_path / 'learned_embeds.safetensors', {'<x>': rows(1)})
    (tmp_path / 'other.safetensors').write_bytes(b'not read')
    assert torch.equal(read_embedding_file(tmp_path).embeddings['<x>'], rows(1))


def test_folder_prefers_safetensors_over_bin(tmp_path):
    torch.save({'<x>': rows(1, seed=1)}, tmp_path / 'learned_embeds.bin')
    assert torch.equal(read_embedding_file(tmp_path).embeddings['<x>'], rows(1, seed=1))
    write_embedding_file(tmp_path / 'learned_embeds.safetensors', {'<x>': rows(1, seed=2)})
    assert torch.equal(read_embedding_file(tmp_path).embeddings['<x>'], rows(1, seed=2))


@pytest.mark.parametrize('save', ['torch', 'safetensors'])
def test_bare_vector_becomes_one_row(tmp_path, save):
    vector = rows(1)[0]
    path = tmp_path / 'vector.bin'
    if save == 'torch':
        torch.save({'<x>': vector}, path)
    else:
        safetensors.torch.save_file({'<x>': vector}, str(path))
    loaded = read_embedding_file(path).embeddings['<x>']
    assert loaded.shape == (1, 32) and torch.equal(loaded[0], vector)


@pytest.mark.parametrize('shape', [(), (1, 2, 32)])
def test_wrong_shape_is_named(tmp_path, shape):
    path = tmp_path / 'bad.safetensors'
    safetensors.torch.save_file({'<bad>': torch.zeros(shape)}, str(path))
    with pytest.raises(ValueError, match=r"'<bad>'.*shape.*\[num_vectors, dim\]") as info:
        read_embedding_file(path).embeddings
    assert str(path) in str(info.value) and str(tuple(shape)) in str(info.value)


@pytest.mark.parametrize('save', ['torch', 'safetensors'])
def test_empty_file_is_refused(tmp_path, save):
    path = tmp_path / 'empty.bin'
    if save == 'torch':
        torch.save({}, path)
    else:
        safetensors.torch.save_file({}, str(path))
    with pytest.raises(ValueError, match='holds no embeddings') as info:
        read_embedding_file(path).embeddings
    assert str(path) in str(info.value)


def test_non_dict_is_refused(tmp_path):
    path = tmp_path / 'tensor.pt'
    torch.save(rows(1), path)
    with pytest.raises(ValueError, match='holds no embeddings'):
        read_embedding_file(path).embeddings


@pytest.mark.parametrize('value, kind', [([1.0, 2.0], 'list'), ('text', 'str'), (3, 'int')])
def test_non_tensor_value_is_named(tmp_path, value, kind):
    path = tmp_path / 'odd.pt'
    torch.save({'<ok>': rows(1), '<odd>': value}, path)
    with pytest.raises(ValueError, match=rf"'<odd>' is a {kind}, not a tensor"):
        read_embedding_file(path).embeddings


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / 'nowhere' / 'learned_embeds.safetensors'
    with pytest.raises(FileNotFoundError) as info:
        read_embedding_file(path).embeddings
    assert str(path) in str(info.value)


def test_folder_without_embeddings_names_the_folder(tmp_path):
    (tmp_path / 'readme.txt').write_text('no embeddings here')
    with pytest.raises(FileNotFoundError, match='learned_embeds.safetensors') as info:
        read_embedding_file(tmp_path).embeddings
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize('name', ['learned_embeds.bin', 'evil.safetensors', 'evil.pt', 'evil'])
def test_code_running_pickle_never_runs(tmp_path, name):
    marker = tmp_path / 'MARKER'
    path = tmp_path / name
    torch.save({'<x>': TouchOnLoad(marker)}, path)
    with pytest.raises(Exception):
        read_embedding_file(path).embeddings
    assert not marker.exists()


@pytest.mark.parametrize('name', ['learned_embeds.bin', 'evil.pt', 'evil',
                                  'evil.safetensors'])
def test_code_running_pickle_is_refused_clearly(tmp_path, name):
    marker = tmp_path / 'MARKER'
    path = tmp_path / name
    torch.save({'<x>': TouchOnLoad(marker)}, path)
    assert not marker.exists()
    with pytest.raises(ValueError) as info:
        read_embedding_file(path).embeddings
    message = str(info.value)
    assert str(path) in message
    assert 'Refusing' in message and 'unsafe' in message and '.safetensors' in message
    assert not marker.exists()


def test_code_running_pickle_in_folder_is_refused(tmp_path):
    marker = tmp_path / 'MARKER'
    torch.save({'<x>': TouchOnLoad(marker)}, tmp_path / 'learned_embeds.bin')
    with pytest.raises(ValueError, match='unsafe'):
        read_embedding_file(tmp_path).embeddings
    assert not marker.exists()


def test_the_evil_pickle_really_carries_a_code_call(tmp_path):
    """Guards the tests above: the file names a callable that would run on load.

    Read with pickletools (which never executes anything) rather than by
    loading it unsafely.
    """
    import pickletools
    import zipfile
    marker = tmp_path / 'MARKER'
    path = tmp_path / 'evil.bin'
    torch.save({'<x>': TouchOnLoad(marker)}, path)
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    names = [arg for name, arg in ops if name in ('GLOBAL', 'SHORT_BINUNICODE', 'BINUNICODE')]
    assert 'touch' in names or any('touch' in str(n) for n in names)
    assert any(name == 'REDUCE' for name, _ in ops)
    assert not marker.exists()


# ------------------------------------------- damaged files: one-line ValueErrors naming the file
def _damaged(tmp_path, kind: str) -> pathlib.Path:
    good_st = tmp_path / 'good.safetensors'
    safetensors.torch.save_file({'<x>': rows(2)}, str(good_st))
    good_pt = tmp_path / 'good.pt'
    torch.save({'<x>': rows(2)}, good_pt)
    path = tmp_path / f'damaged-{kind}.bin'
    data = {'empty': b'',
            'safetensors body cut': good_st.read_bytes()[:-20],
            'safetensors header cut': good_st.read_bytes()[:30],
            'zip cut': good_pt.read_bytes()[:len(good_pt.read_bytes()) // 2],
            'pickle cut': b'\x80\x02}q\x00(X',
            'text': b'hello, I am not an embedding\n'}[kind]
    path.write_bytes(data)
    return path


@pytest.mark.parametrize('kind, message', [
    ('empty', r'is empty \(0 bytes\)'),
    ('safetensors body cut', 'damaged or truncated safetensors file'),
    ('safetensors header cut', 'damaged or truncated safetensors file'),
    ('zip cut', 'damaged or truncated torch file'),
    ('pickle cut', 'damaged or truncated torch file'),
    ('text', 'neither a safetensors file nor a torch-saved file'),
])
def test_damaged_file_is_one_line_naming_it(tmp_path, kind, message):
    path = _damaged(tmp_path, kind)
    with pytest.raises(ValueError, match=message) as info:
        read_embedding_file(path).embeddings
    assert str(path) in str(info.value) and '\n' not in str(info.value)


@pytest.mark.parametrize('save', ['safetensors', 'torch'])
@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_rows_are_refused_on_read(tmp_path, save, bad):
    values = rows(3)
    values[1, 4] = bad
    path = tmp_path / f'bad.{save}'
    if save == 'torch':
        torch.save({'<x>': values}, path)
    else:
        safetensors.torch.save_file({'<x>': values}, str(path))
    with pytest.raises(ValueError, match=r"'<x>' has NaN or infinite values \(vector\(s\) \[1\]\)") as info:
        read_embedding_file(path).embeddings
    assert str(path) in str(info.value)


def test_non_finite_rows_are_refused_on_write_and_keep_the_old_file(tmp_path):
    path = write_embedding_file(tmp_path / 'learned_embeds.safetensors', {'<x>': rows(1)})
    before = path.read_bytes()
    values = rows(2)
    values[0, 0] = float('nan')
    with pytest.raises(ValueError, match=r"'<x>' has NaN or infinite values") as info:
        write_embedding_file(path, {'<x>': values})
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['learned_embeds.safetensors']


def test_numpy_arrays_are_refused_clearly(tmp_path):
    import numpy as np
    path = tmp_path / 'numpy.pt'
    torch.save({'<x>': np.zeros((1, 32), dtype=np.float32)}, path)
    with pytest.raises(ValueError, match=r'holds numpy arrays.*torch.from_numpy') as info:
        read_embedding_file(path).embeddings
    assert str(path) in str(info.value)


def test_integer_rows_are_refused(tmp_path):
    path = tmp_path / 'ints.safetensors'
    safetensors.torch.save_file({'<x>': torch.zeros(1, 32, dtype=torch.int64)}, str(path))
    with pytest.raises(ValueError, match=r"'<x>' holds torch.int64 values; embedding rows are floating"):
        read_embedding_file(path).embeddings


@pytest.mark.parametrize('name', ['', ' <x>', '<x>\n', 'a\tb', 7])
def test_odd_token_names_are_refused(tmp_path, name):
    path = tmp_path / 'odd.pt'
    torch.save({name: rows(1)}, path)
    with pytest.raises(ValueError, match='token name') as info:
        read_embedding_file(path).embeddings
    assert str(path) in str(info.value) and '\n' not in str(info.value).replace(repr(name), '')
    with pytest.raises(ValueError, match='token name'):
        write_embedding_file(tmp_path / 'out.safetensors', {name: rows(1)})
    assert not (tmp_path / 'out.safetensors').exists()


@pytest.mark.parametrize('name, fmt', [('x.pt', 'diffusers'), ('x.safetensors', 'a1111'),
                                       ('x.bin', 'safetensors'), ('x', 'diffusers')])
def test_a_name_whose_ending_says_another_layout_is_refused(tmp_path, name, fmt):
    # A1111 opens .pt with torch.load and the others .safetensors with
    # safetensors: a file named for the other would not open anywhere.
    with pytest.raises(ValueError, match=rf'{name}: the {fmt} layout is written as'):
        write_embedding_file(tmp_path / name, {'<x>': rows(1)}, fmt)
    assert list(tmp_path.iterdir()) == []


def test_a_whole_checkpoint_is_an_unknown_layout(tmp_path):
    path = tmp_path / 'model.ckpt'
    torch.save({'state_dict': {'unet.weight': rows(2)}, 'global_step': 3}, path)
    with pytest.raises(ValueError, match=r"'state_dict' is a dict, not a tensor; not a known "
                                         r'embedding layout \(\{"<token>"'):
        read_embedding_file(path).embeddings


WRITE_EVERY_FORMAT = '''
import sys, torch
from mmti.fileio import write_embedding_file
out = sys.argv[1]
rows = torch.arange(64, dtype=torch.float32).reshape(2, 32)
for fmt, name in [('diffusers', 'a.safetensors'), ('diffusers', 'a.bin'), ('a1111', 'a.pt'),
                  ('safetensors', 'k.safetensors')]:
    write_embedding_file(f'{out}/{name}', {'<t>': rows}, fmt, step=3, metadata={'base_model': 'x'})
write_embedding_file(f'{out}/xl.safetensors', {'<t>': rows}, 'sdxl', embeddings_2={'<t>': rows + 1},
                     step=3, metadata={'base_model': 'x'})
'''


def test_identical_writes_in_two_processes_are_byte_identical(tmp_path):
    # Each process has its own hash seed (safetensors' metadata order followed
    # it) and its own temporary names (torch.save's inner folder followed them).
    import subprocess
    import sys

    from mmti_testing import REPO_ROOT
    outputs = []
    for run in ('first', 'second'):
        out = tmp_path / run
        out.mkdir()
        subprocess.run([sys.executable, '-c', WRITE_EVERY_FORMAT, str(out)], cwd=REPO_ROOT, check=True,
                       env={**os.environ, 'PYTHONPATH': str(REPO_ROOT)})
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert sorted(outputs[0]) == ['a.bin', 'a.pt', 'a.safetensors', 'k.safetensors', 'xl.safetensors']
    assert outputs[0] == outputs[1]
    loaded = read_embedding_file(tmp_path / 'first' / 'xl.safetensors')
    assert torch.equal(loaded.embeddings_2['<t>'], torch.arange(64.).reshape(2, 32) + 1)
