"""tools/evaluate.py bad-input matrix: exit 2, one line naming the problem, nothing in the
output folder changed -- all decided before CLIP or the diffusion model loads."""
import shutil

import pytest
import torch
from fault_matrix import assert_kept, assert_refused, deny_writes, snapshot
from mmti_testing import CAT_TOY
from tool_runner import TINY_CONFIG, load_tool, run_tool

from mmti.fileio import write_embedding_file

PROG = 'tools/evaluate.py'


@pytest.fixture
def world(tmp_path):
    """Embedding, a CLIP-shaped folder (never loaded: every case fails first), images, out dir."""
    emb = write_embedding_file(tmp_path / 'learned_embeds.safetensors',
                               {'<cat-toy>': torch.randn(1, 32)})
    clip = tmp_path / 'clip'
    clip.mkdir()
    (clip / 'config.json').write_text('{}')
    (clip / 'model.safetensors').write_bytes(b'')
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'metrics.json').write_text('{"rows": "from an earlier evaluation"}\n')
    (out / 'similarity.png').write_bytes(b'earlier plot')
    return dict(tmp=tmp_path, emb=str(emb), clip=str(clip), out=out)


def config_with(tmp_path, text: str) -> str:
    path = tmp_path / 'cfg.py'
    path.write_text(f'_base_ = [{TINY_CONFIG!r}]\n{text}\n')
    return str(path)


def args_for(case: str, w: dict) -> tuple[list[str], str]:
    """(argv, regex of the message) of one case."""
    tmp = w['tmp']
    base = ['--embeddings', w['emb'], '--clip', w['clip'], '--concept-dir', str(CAT_TOY),
            '--out-dir', str(w['out'])]
    if case == 'missing config':
        return [str(tmp / 'nope.py'), *base], r'config .*nope.py does not exist'
    if case == 'misspelt --cfg-options key':
        return ([TINY_CONFIG, *base, '--cfg-options', 'model.pretrainedmodel=x'],
                r"model \(TextualInversion\) has no field 'pretrainedmodel'; did you mean "
                r"'pretrained_model'")
    if case == 'missing model folder':
        return ([TINY_CONFIG, *base, '--cfg-options', 'model.pretrained_model=models/sd15'],
                r'model.pretrained_model models/sd15 is neither a local folder \(looked in '
                r'.*models/sd15\) nor in the Hugging Face cache')
    if case == '--cfg-options without =':
        return ([TINY_CONFIG, *base, '--cfg-options', 'foo'],
                r"argument --cfg-options: 'foo' is not KEY=VALUE")
    if case == 'no evaluation block, no --clip':
        argv = [config_with(tmp, 'evaluation = None'), '--embeddings', w['emb'],
                '--out-dir', str(w['out'])]
        return argv, r'no CLIP model given: pass --clip FOLDER .* or set evaluation.clip'
    if case == 'evaluation block not a dict':
        return ([config_with(tmp, 'evaluation = 5'), *base],
                r'evaluation is a int; write it as a dict')
    if case == 'unknown evaluation key':
        return ([config_with(tmp, "evaluation = dict(num_sample=3)"), *base],
                r"unknown keys \['num_sample'\]")
    if case == 'evaluation.num_samples a string':
        return ([config_with(tmp, "evaluation = dict(num_samples='8')"), *base],
                r"--num-samples \(or evaluation.num_samples\) is '8'; it must be a whole number")
    if case == '--num-samples 0':
        return [TINY_CONFIG, *base, '--num-samples', '0'], r'--num-samples .* is 0; .*at least 1'
    if case == '--steps -2':
        return [TINY_CONFIG, *base, '--steps', '-2'], r'--steps .* is -2; .*at least 1'
    if case == '--size 30':
        return [TINY_CONFIG, *base, '--size', '30'], r'--size .* is 30; .*multiple of 8'
    if case == '--guidance-scale nan':
        return [TINY_CONFIG, *base, '--guidance-scale', 'nan'], r'--guidance-scale .* finite'
    if case == '--device typo':
        return [TINY_CONFIG, *base, '--device', 'gpu'], r"--device 'gpu' is not a device"
    if case == 'missing clip folder':
        argv = [TINY_CONFIG, *base]
        argv[argv.index('--clip') + 1] = str(tmp / 'no-clip')
        return argv, r'CLIP folder .*no-clip does not exist; pass --clip'
    if case == 'missing held-out dir':
        return ([TINY_CONFIG, *base, '--held-out-dir', str(tmp / 'gone')],
                r'--held-out-dir .*gone does not exist or is not a folder')
    if case == 'empty held-out dir':
        (tmp / 'held').mkdir()
        (tmp / 'held' / 'notes.txt').write_text('x')
        return ([TINY_CONFIG, *base, '--held-out-dir', str(tmp / 'held')],
                r"--held-out-dir: .*held has no images .*found: \['notes.txt'\]")
    if case == 'unreadable image':
        concept = tmp / 'concept'
        shutil.copytree(CAT_TOY, concept)
        (concept / 'broken.jpg').write_bytes(b'not a jpeg')
        argv = [TINY_CONFIG, *base]
        argv[argv.index('--concept-dir') + 1] = str(concept)
        return argv, r'Cannot read image .*broken.jpg'
    if case == 'damaged embedding file':
        bad = tmp / 'bad.safetensors'
        bad.write_bytes(open(w['emb'], 'rb').read()[:-10])
        argv = [TINY_CONFIG, *base]
        argv[argv.index('--embeddings') + 1] = str(bad)
        return argv, r'bad.safetensors is a damaged or truncated safetensors file'
    if case == 'missing embedding file':
        argv = [TINY_CONFIG, *base]
        argv[argv.index('--embeddings') + 1] = str(tmp / 'none.safetensors')
        return argv, r'embeddings .*none.safetensors do not exist'
    if case == 'out dir below a file':
        argv = [TINY_CONFIG, *base]
        argv[argv.index('--out-dir') + 1] = str(w['out'] / 'metrics.json' / 'sub')
        return argv, r'metrics.json is a file, not a folder; pass another --out-dir'
    raise AssertionError(case)


CASES = ['--device typo', 'missing config', 'misspelt --cfg-options key', 'missing model folder',
         '--cfg-options without =', 'no evaluation block, no --clip', 'evaluation block not a dict',
         'unknown evaluation key', 'evaluation.num_samples a string', '--num-samples 0',
         '--steps -2', '--size 30', '--guidance-scale nan', 'missing clip folder',
         'missing held-out dir', 'empty held-out dir', 'unreadable image',
         'damaged embedding file', 'missing embedding file', 'out dir below a file']


@pytest.mark.parametrize('case', CASES)
def test_evaluate_refuses_bad_input(case, world, capsys):
    argv, pattern = args_for(case, world)
    before = snapshot(world['out'])
    with pytest.raises(SystemExit) as info:
        load_tool('evaluate').cli(argv)
    assert_refused(info.value.code, capsys.readouterr().err, PROG, pattern)
    assert_kept(before, world['out'])
    assert snapshot(world['out']).keys() == before.keys()


def test_read_only_out_dir_is_refused_before_any_work(world, capsys, monkeypatch):
    import mmti.fileio.output_dir as output_dir
    locked = world['tmp'] / 'locked'
    locked.mkdir()
    locked.chmod(0o500)
    deny_writes(monkeypatch, output_dir.os, locked)
    argv, _ = args_for('--size 30', world)
    argv = [a for a in argv if a not in ('--size', '30')]
    argv[argv.index('--out-dir') + 1] = str(locked / 'eval')
    with pytest.raises(SystemExit) as info:
        load_tool('evaluate').cli(argv)
    assert_refused(info.value.code, capsys.readouterr().err, PROG,
                   r'--out-dir .*locked/eval is not writable \(.*locked denies it\)')
    assert not (locked / 'eval').exists()


def test_subprocess_bad_config_is_one_line(world):
    argv, pattern = args_for('evaluation block not a dict', world)
    before = snapshot(world['out'])
    result = run_tool('tools/evaluate.py', *argv, check=False)
    line = assert_refused(result.returncode, result.stderr, PROG, pattern)
    assert result.stderr.strip() == line
    assert_kept(before, world['out'])
