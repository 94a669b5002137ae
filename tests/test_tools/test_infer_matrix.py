"""tools/infer.py bad-input matrix: exit 2, one line naming the problem and the fix, and every
file already in the output folder byte-identical afterwards. Most cases are decided before
the model loads (and so cost no model load here)."""

import pytest
import safetensors.torch
import torch
from fault_matrix import assert_kept, assert_refused, deny_writes, snapshot
from tool_runner import TINY_CONFIG, load_tool, run_tool

from mmti.fileio import write_embedding_file

PROG = 'tools/infer.py'


@pytest.fixture
def world(tmp_path):
    emb = write_embedding_file(tmp_path / 'learned_embeds.safetensors',
                               {'<cat-toy>': torch.randn(1, 32)})
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'a_cat_toy_bag_seed0_0.png').write_bytes(b'an earlier sample')
    (out / 'notes.txt').write_text('keep me\n')
    return dict(tmp=tmp_path, emb=str(emb), out=out)


def bad_embedding(tmp, kind: str) -> str:
    path = tmp / f'{kind}.safetensors'
    if kind == 'truncated':
        good = write_embedding_file(tmp / 'whole.safetensors', {'<cat-toy>': torch.randn(2, 32)})
        path.write_bytes(good.read_bytes()[:-12])
    elif kind == 'empty':
        path.write_bytes(b'')
    elif kind == 'nan':
        rows = torch.randn(2, 32)
        rows[1, 0] = float('nan')
        safetensors.torch.save_file({'<cat-toy>': rows}, str(path))
    elif kind == 'two-vectors':
        safetensors.torch.save_file({'<cat-toy>': torch.randn(2, 32)}, str(path))
    elif kind == 'sd2':
        safetensors.torch.save_file({'<cat-toy>': torch.zeros(1, 1024)}, str(path))
    elif kind == 'sdxl':
        write_embedding_file(path, {'<s>': torch.randn(1, 768)}, 'sdxl',
                             embeddings_2={'<s>': torch.randn(1, 1280)})
    elif kind == 'sdxl_2':  # the second file of diffusers' pair, given alone
        write_embedding_file(tmp / 'pair.safetensors', {'<s>': torch.randn(1, 768)})
        write_embedding_file(path, {'<s>': torch.randn(1, 1280)})
        path = path.rename(tmp / 'pair_2.safetensors')
    return str(path)


# case: (argv edits, regex). '@emb:<kind>' swaps the embedding file, '@out:<path>' the out dir.
CASES = {
    'height not a multiple of 8': (['--height', '60'],
                                   r'--height 60 must be a positive multiple of 8 \(e.g. 56 or 64\)'),
    'width 0': (['--width', '0'], r'--width 0 must be a positive multiple of 8'),
    'negative height': (['--height', '-64'], r'--height -64 must be a positive multiple of 8'),
    'steps 0': (['--steps', '0'], r'--steps 0: the number of denoising steps must be at least 1'),
    'num-images 0': (['--num-images', '0'], r'--num-images 0: .*at least 1'),
    'batch-size 0': (['--batch-size', '0'], r'--batch-size 0: .*at least 1'),
    'guidance nan': (['--guidance-scale', 'nan'], r'--guidance-scale nan must be a finite number'),
    'unknown scheduler': (['--scheduler', 'FancyScheduler'],
                          r"--scheduler 'FancyScheduler' is not a sampler for this model; use one "
                          r'of: .*DDIMScheduler.*EulerDiscreteScheduler'),
    'device typo': (['--device', 'gpu'], r"--device 'gpu' is not a device; use cpu, cuda"),
    'missing config': (['@config'], r'config .*nope.py does not exist; give the path of a config'),
    'misspelt --cfg-options key': (['--cfg-options', 'model.pretrainedmodel=x'],
                                   r"model \(TextualInversion\) has no field 'pretrainedmodel'; "
                                   r"did you mean 'pretrained_model'"),
    'missing model folder': (['--cfg-options', 'model.pretrained_model=models/sd15'],
                             r'model.pretrained_model models/sd15 is neither a local folder '
                             r'\(looked in .*models/sd15\) nor in the Hugging Face cache'),
    '--cfg-options without =': (['--cfg-options', 'foo'],
                                r"argument --cfg-options: 'foo' is not KEY=VALUE"),
    'missing embedding file': (['@emb:missing'], r'Embedding file .*missing.safetensors does not exist'),
    'truncated embedding file': (['@emb:truncated'],
                                 r'truncated.safetensors is a damaged or truncated safetensors file'),
    'empty embedding file': (['@emb:empty'], r'empty.safetensors is empty \(0 bytes\)'),
    'NaN embedding': (['@emb:nan'], r"'<cat-toy>' has NaN or infinite values \(vector\(s\) \[1\]\)"),
    'embedding for another model': (['@emb:sd2'],
                                     r"'<cat-toy>' from .*sd2.safetensors has shape \(1, 1024\): "
                                     r'dimension 1024 \(SD 2.x\), but this text encoder uses '
                                     r'dimension 32'),
    'SDXL embedding in an SD model': (['@emb:sdxl'],
                                      r"'<s>' from .*sdxl.safetensors \(an SDXL embedding, clip_l "
                                      r'\+ clip_g: use it with an SDXL config\)'),
    'clip_g half of an SDXL pair': (['@emb:sdxl_2'],
                                    r'pair_2.safetensors is the clip_g half of the SDXL embedding '
                                    r'pair.safetensors \+ pair_2.safetensors; load .*pair.safetensors '
                                    r'\(with an SDXL model\), which reads pair_2.safetensors from '
                                    r'beside it'),
    'out dir is a file': (['@out:notes.txt'], r'--out-dir .*notes.txt: .*is a file, not a folder'),
    'out dir below a file': (['@out:notes.txt/more'], r'notes.txt is a file, not a folder; pass'),
}


def argv_for(edits: list[str], w: dict) -> list[str]:
    config, emb, out = TINY_CONFIG, w['emb'], str(w['out'])
    extra = []
    for edit in edits:
        if edit == '@config':
            config = str(w['tmp'] / 'nope.py')
        elif edit.startswith('@emb:'):
            kind = edit[5:]
            emb = (str(w['tmp'] / 'missing.safetensors') if kind == 'missing'
                   else bad_embedding(w['tmp'], kind))
        elif edit.startswith('@out:'):
            out = str(w['out'] / edit[5:])
        else:
            extra.append(edit)
    return [config, '--embeddings', emb, '--prompt', 'a <cat-toy> bag', '--steps', '2',
            '--out-dir', out, *extra]


@pytest.mark.parametrize('case', list(CASES))
def test_infer_refuses_bad_input_before_loading(case, world, capsys, monkeypatch):
    edits, pattern = CASES[case]
    import mmti.registry
    # Proof that the refusal comes before the (slow) model build.
    monkeypatch.setattr(mmti.registry.MODELS, 'build',
                        lambda *a, **k: pytest.fail('the model was built before the refusal'))
    before = snapshot(world['out'])
    with pytest.raises(SystemExit) as info:
        load_tool('infer').cli(argv_for(edits, world))
    assert_refused(info.value.code, capsys.readouterr().err, PROG, pattern)
    assert_kept(before, world['out'])
    assert snapshot(world['out']).keys() == before.keys()


def test_read_only_out_dir_is_refused_before_sampling(world, capsys, monkeypatch):
    import mmti.fileio.output_dir as output_dir
    locked = world['tmp'] / 'locked'
    locked.mkdir()
    locked.chmod(0o500)
    deny_writes(monkeypatch, output_dir.os, locked)
    argv = argv_for([], world)
    argv[argv.index('--out-dir') + 1] = str(locked / 'samples')
    with pytest.raises(SystemExit) as info:
        load_tool('infer').cli(argv)
    assert_refused(info.value.code, capsys.readouterr().err, PROG,
                   r'--out-dir .*locked/samples is not writable \(.*locked denies it\); pass')
    assert not (locked / 'samples').exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
def test_cuda_without_a_gpu_is_refused(world, capsys):
    with pytest.raises(SystemExit) as info:
        load_tool('infer').cli(argv_for(['--device', 'cuda'], world))
    assert_refused(info.value.code, capsys.readouterr().err, PROG,
                   r'--device cuda: this machine has no usable CUDA GPU; pass --device cpu')


# Decided by the model or by its size: one model load each.
LOADED_CASES = {
    'vectors differ from the config': (['@emb:two-vectors'],
                                       r"'<cat-toy>' has 1 vector\(s\) in this model but 2 in "
                                       r'.*two-vectors.safetensors.*; set num_vectors=2'),
    'image too large for memory': (['--height', '400000', '--width', '400000'],
                                   r'--height/--width 400000x400000 needs about .* GiB per image, '
                                   r'more than the .* GiB of memory of cpu; lower them'),
    'more images than the disk holds': (['--num-images', str(10 ** 12)],
                                        r'images of 64x64 may need .* GiB, but .* free; lower '
                                        r'--num-images \(at most about \d+ images'),
}


@pytest.mark.parametrize('case', list(LOADED_CASES))
def test_infer_refuses_before_sampling(case, world, capsys):
    edits, pattern = LOADED_CASES[case]
    before = snapshot(world['out'])
    with pytest.raises(SystemExit) as info:
        load_tool('infer').cli(argv_for([*edits, '--device', 'cpu'], world))
    assert_refused(info.value.code, capsys.readouterr().err, PROG, pattern)
    assert_kept(before, world['out'])
    assert snapshot(world['out']).keys() == before.keys()


def test_subprocess_damaged_embedding_is_one_line_and_debug_shows_the_traceback(world):
    argv = argv_for(['@emb:truncated'], world)
    before = snapshot(world['out'])
    result = run_tool('tools/infer.py', *argv, check=False)
    line = assert_refused(result.returncode, result.stderr, PROG, r'damaged or truncated')
    assert result.stderr.strip() == line, 'more than one line on stderr'
    assert_kept(before, world['out'])
    debug = run_tool('tools/infer.py', *argv, '--debug', check=False)
    assert debug.returncode != 0 and 'Traceback' in debug.stderr
    assert_kept(before, world['out'])
