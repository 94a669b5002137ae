"""tools/convert_embeddings.py bad-input matrix: exit 2, one line naming the problem, and
every file already in the folder byte-identical afterwards (an existing output included)."""
import pytest
import safetensors.torch
import torch
from fault_matrix import assert_kept, assert_refused, snapshot
from tool_runner import load_tool, run_tool

from mmti.fileio import write_embedding_file

PROG = 'tools/convert_embeddings.py'


def rows(n: int = 2, dim: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def make_input(folder, kind: str):
    """The input file of a case (in ``folder``); returns its path."""
    good = write_embedding_file(folder / 'good.safetensors', {'<cat-toy>': rows()})
    if kind == 'good':
        return good
    path = folder / f'input-{kind.replace(" ", "-")}.safetensors'
    if kind == 'corrupt safetensors':
        path.write_bytes(good.read_bytes()[:-16])  # header intact, data cut: a SafetensorError
    elif kind == 'empty':
        path.write_bytes(b'')
    elif kind == 'truncated pt':
        torch.save({'<cat-toy>': rows()}, folder / 'whole.pt')
        path = folder / 'input.pt'
        path.write_bytes((folder / 'whole.pt').read_bytes()[:300])
    elif kind == 'text':
        path = folder / 'notes.txt'
        path.write_text('an embedding, honest\n')
    elif kind == 'unknown layout':
        path = folder / 'model.ckpt'
        torch.save({'state_dict': {'unet.conv.weight': rows()}, 'epoch': 3}, path)
    elif kind == 'nan rows':
        bad = rows()
        bad[1, 3] = float('nan')
        safetensors.torch.save_file({'<cat-toy>': bad}, str(path))
    elif kind == 'inf rows':
        bad = rows()
        bad[0, 0] = float('inf')
        torch.save({'<cat-toy>': bad}, folder / 'inf.bin')
        path = folder / 'inf.bin'
    elif kind == 'wrong rank':
        safetensors.torch.save_file({'<cat-toy>': torch.zeros(1, 2, 32)}, str(path))
    elif kind == 'integer rows':
        safetensors.torch.save_file({'<cat-toy>': torch.zeros(2, 32, dtype=torch.int32)}, str(path))
    elif kind == 'numpy':
        import numpy as np
        path = folder / 'numpy.pt'
        torch.save({'<cat-toy>': np.zeros((2, 32), dtype=np.float32)}, path)
    elif kind == 'png pickle':
        import base64
        import pickle

        from PIL import Image, PngImagePlugin
        info = PngImagePlugin.PngInfo()
        info.add_text('sd-ti-embedding', base64.b64encode(pickle.dumps({'x': 1})).decode())
        path = folder / 'cat-toy.png'
        Image.new('RGB', (8, 8), (9, 9, 9)).save(path, pnginfo=info)
    elif kind == 'odd name':
        path = folder / 'odd.pt'
        torch.save({'<cat\ntoy>': rows()}, path)
    return path


# case: (input kind, output name or callable(folder, input) -> output, extra args, regex)
CASES = {
    'corrupt safetensors (SafetensorError)': (
        'corrupt safetensors', 'out.safetensors', [],
        r'input-corrupt-safetensors.safetensors is a damaged or truncated safetensors file'),
    'empty input': ('empty', 'out.safetensors', [], r'input-empty.safetensors is empty \(0 bytes\)'),
    'truncated .pt': ('truncated pt', 'out.safetensors', [],
                      r'input.pt is a damaged or truncated torch file'),
    'not an embedding file': ('text', 'out.safetensors', [],
                              r'notes.txt is neither a safetensors file nor a torch-saved file'),
    'unknown layout': ('unknown layout', 'out.safetensors', [],
                       r"model.ckpt: entry 'state_dict' is a dict, not a tensor; not a known "
                       r'embedding layout'),
    'NaN rows': ('nan rows', 'out.pt', [],
                 r"'<cat-toy>' has NaN or infinite values \(vector\(s\) \[1\]\)"),
    'inf rows': ('inf rows', 'out.pt', [], r'inf.bin: embedding .*NaN or infinite'),
    'wrong rank': ('wrong rank', 'out.pt', [], r"'<cat-toy>' has shape \(1, 2, 32\); expected"),
    'integer rows': ('integer rows', 'out.pt', [], r'holds torch.int32 values'),
    'numpy arrays': ('numpy', 'out.safetensors', [], r'numpy.pt holds numpy arrays'),
    'pickle in an A1111 PNG': ('png pickle', 'out.safetensors', [],
                               r"Refusing .*cat-toy.png: its 'sd-ti-embedding' text chunk holds a "
                               r'pickle'),
    'odd token name': ('odd name', 'out.safetensors', [], r'token name .* line breaks'),
    'bad --token': ('good', 'out.pt', ['--token', ' '], r'--token: token name'),
    'missing input': ('good', 'out.pt', ['@missing'], r'Input .*nowhere.safetensors does not exist'),
    'output in a missing folder': ('good', 'no/such/dir/out.pt', [],
                                   r'Output folder .*no/such/dir does not exist'),
    'output below a file': ('good', 'keep.txt/out.pt', [], r'keep.txt is a file, not a folder'),
    'output is a folder': ('good', 'sub.safetensors', ['@mkdir'], r'is a folder; give a file name'),
    'output equals input': ('good', 'good.safetensors', ['--force'],
                            r'Output .*good.safetensors is the input; choose another name'),
    'output is the file of an input folder': (
        'good', 'learned_embeds.safetensors', ['@folder', '--force'], r'is the input'),
    'wrong output extension': ('good', 'out.txt', [],
                               r"diffusers layout is written as .safetensors or .bin, not '.txt'"),
    'a1111 into .safetensors': ('good', 'out.safetensors', ['--to', 'a1111'],
                                r'a1111 layout is written as .pt'),
    'kohya into .pt': ('good', 'out.pt', ['--to', 'safetensors'],
                       r'safetensors layout is written as .safetensors'),
    'existing output without --force': ('good', 'keep.pt', [], r'keep.pt exists; pass --force'),
    'existing output, --force, bad input': ('nan rows', 'keep.pt', ['--force'], r'NaN or infinite'),
}


@pytest.mark.parametrize('case', list(CASES))
def test_convert_refuses_bad_input(case, tmp_path, capsys):
    kind, output, extra, pattern = CASES[case]
    folder = tmp_path / 'work'
    folder.mkdir()
    src = make_input(folder, kind)
    (folder / 'keep.txt').write_text('not yours to touch\n')
    write_embedding_file(folder / 'keep.pt', {'<earlier>': rows(1, seed=9)}, 'a1111')
    args = [a for a in extra if not a.startswith('@')]
    if '@missing' in extra:
        src = folder / 'nowhere.safetensors'
    if '@mkdir' in extra:
        (folder / output).mkdir()
    if '@folder' in extra:
        (folder / 'good.safetensors').rename(folder / 'learned_embeds.safetensors')
        src = folder
    before = snapshot(folder)
    with pytest.raises(SystemExit) as info:
        load_tool('convert_embeddings').cli([str(src), str(folder / output), *args])
    assert_refused(info.value.code, capsys.readouterr().err, PROG, pattern)
    assert_kept(before, folder)
    assert snapshot(folder).keys() == before.keys(), 'a file was added'


def test_subprocess_corrupt_input_is_one_line_and_debug_shows_the_traceback(tmp_path):
    src = make_input(tmp_path, 'corrupt safetensors')
    out = tmp_path / 'out.pt'
    out.write_bytes(b'precious')
    before = snapshot(tmp_path)
    result = run_tool('tools/convert_embeddings.py', str(src), str(out), '--force', check=False)
    line = assert_refused(result.returncode, result.stderr, PROG, r'damaged or truncated safetensors')
    assert result.stderr.strip() == line, 'more than one line on stderr'
    assert_kept(before, tmp_path)
    debug = run_tool('tools/convert_embeddings.py', str(src), str(out), '--force', '--debug',
                     check=False)
    assert debug.returncode != 0 and 'Traceback' in debug.stderr
    assert out.read_bytes() == b'precious'
