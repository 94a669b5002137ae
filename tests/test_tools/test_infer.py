"""tools/infer.py: PNGs from a learned embedding, reproducible by seed."""
import numpy as np
import pytest
import torch
from mmti_testing import build_tiny_model
from PIL import Image
from tool_runner import TINY_CONFIG, assert_quiet, load_tool, run_tool


@pytest.fixture(scope='module')
def embedding_file(tmp_path_factory):
    model = build_tiny_model()
    with torch.no_grad():
        model.token_embedding.concept_rows('<cat-toy>').normal_(generator=torch.Generator().manual_seed(0))
    return model.save_embeddings(str(tmp_path_factory.mktemp('emb') / 'learned_embeds.safetensors'))


def test_infer_cli_writes_requested_images(embedding_file, tmp_path):
    out = tmp_path / 'out'
    result = run_tool('tools/infer.py', TINY_CONFIG, '--embeddings', embedding_file,
                      '--prompt', 'a <cat-toy> bag', '--prompt', 'a <cat-toy> on a beach',
                      '--num-images', '2', '--steps', '3', '--seed', '1', '--width', '96',
                      '--out-dir', str(out))
    files = sorted(out.glob('*.png'))
    assert [f.name for f in files] == [
        'a_cat_toy_bag_seed1_0.png', 'a_cat_toy_bag_seed1_1.png',
        'a_cat_toy_on_a_beach_seed1_0.png', 'a_cat_toy_on_a_beach_seed1_1.png']
    assert all(Image.open(f).size == (96, 64) for f in files)
    assert all(str(f.relative_to(tmp_path)) in result.stdout for f in files) or 'Wrote' in result.stdout
    assert_quiet(result)


def test_infer_is_reproducible_and_uses_the_embedding(embedding_file, tmp_path):
    infer = load_tool('infer')
    args = ['--prompt', 'a <cat-toy> bag', '--steps', '3', '--seed', '4']
    first = infer.main([TINY_CONFIG, '--embeddings', embedding_file, *args,
                        '--out-dir', str(tmp_path / 'a')])
    again = infer.main([TINY_CONFIG, '--embeddings', embedding_file, *args,
                        '--out-dir', str(tmp_path / 'b')])
    # The same prompt without the learned rows (a fresh embedding of "toy").
    fresh = build_tiny_model().save_embeddings(str(tmp_path / 'fresh.safetensors'))
    other = infer.main([TINY_CONFIG, '--embeddings', fresh, *args, '--out-dir', str(tmp_path / 'c')])
    pixels = [np.asarray(Image.open(p[0])) for p in (first, again, other)]
    assert np.array_equal(pixels[0], pixels[1])
    assert not np.array_equal(pixels[0], pixels[2])


def test_token_renames_a_file_named_like_a_common_word(embedding_file, tmp_path):
    # An A1111 file "cat.pt" names its concept "cat", a word the model knows:
    # refused as it is, usable under another name with --token.
    from mmti.fileio import read_embedding_file, write_embedding_file
    rows = read_embedding_file(embedding_file).embeddings['<cat-toy>']
    cat = write_embedding_file(tmp_path / 'cat.pt', {'cat': rows}, 'a1111')
    infer = load_tool('infer')
    args = ['--prompt', 'a <my-cat> bag', '--steps', '3', '--seed', '4']
    with pytest.raises(ValueError, match=r"already in the tokenizer vocabulary .*--token"):
        infer.main([TINY_CONFIG, '--embeddings', str(cat), *args, '--out-dir', str(tmp_path / 'x')])
    renamed = infer.main([TINY_CONFIG, '--embeddings', str(cat), '--token', '<my-cat>', *args,
                          '--out-dir', str(tmp_path / 'a')])
    original = infer.main([TINY_CONFIG, '--embeddings', embedding_file, *args[:1],
                           'a <cat-toy> bag', *args[2:], '--out-dir', str(tmp_path / 'b')])
    assert np.array_equal(np.asarray(Image.open(renamed[0])), np.asarray(Image.open(original[0])))
    # The config's own placeholder, which the file did not give rows for, is not
    # a concept here: a prompt naming it gets the warning, not the word "toy".
    result = run_tool('tools/infer.py', TINY_CONFIG, '--embeddings', str(cat), '--token',
                      '<my-cat>', '--prompt', 'a <cat-toy> bag', '--steps', '2', '--out-dir',
                      str(tmp_path / 'c'))
    assert ("names <cat-toy>, which no loaded embedding has (loaded: <my-cat>)"
            in result.stdout + result.stderr)


def test_infer_rejects_an_embedding_for_another_model(tmp_path):
    from safetensors.torch import save_file
    wrong = tmp_path / 'sd2.safetensors'
    save_file({'<cat-toy>': torch.zeros(1, 1024)}, str(wrong))
    result = run_tool('tools/infer.py', TINY_CONFIG, '--embeddings', str(wrong), '--prompt', 'x',
                      '--out-dir', str(tmp_path / 'o'), check=False)
    assert result.returncode != 0
    assert 'uses dimension 32' in result.stderr and '(1, 1024)' in result.stderr
    assert not (tmp_path / 'o').exists()


def test_colliding_names_and_earlier_files_are_never_overwritten(embedding_file, tmp_path,
                                                                capsys):
    """Prompts differing only in punctuation share a name; each image is kept and reported."""
    out = tmp_path / 'out'
    out.mkdir()
    earlier = out / 'a_cat_toy_bag_seed0_0.png'
    earlier.write_bytes(b'an image from an earlier run')
    written = load_tool('infer').main([
        TINY_CONFIG, '--embeddings', embedding_file, '--prompt', 'a <cat-toy> bag!',
        '--prompt', 'a <cat-toy> bag?', '--prompt', 'a <cat-toy> bag?', '--steps', '2',
        '--out-dir', str(out)])
    assert [p.name for p in written] == ['a_cat_toy_bag_seed0_0-2.png',
                                         'a_cat_toy_bag_seed0_0-3.png',
                                         'a_cat_toy_bag_seed0_0-4.png']
    assert earlier.read_bytes() == b'an image from an earlier run'
    assert all(Image.open(p).format == 'PNG' for p in written)
    stdout = capsys.readouterr().out
    # One line names every file written (not one line per image).
    assert stdout.count('Wrote ') == 1
    assert f'Wrote 3 image(s) to {out}: {", ".join(p.name for p in written)}' in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([earlier.name, *[p.name for p in written]])


def test_images_do_not_depend_on_batching_or_count(embedding_file, tmp_path):
    """Image i comes from (seed, i) alone: same pixels in batches of 1 or 3, and for 2 or 3
    images, so memory-bounded batching never changes a result."""
    infer = load_tool('infer')
    common = [TINY_CONFIG, '--embeddings', embedding_file, '--prompt', 'a <cat-toy> bag',
              '--steps', '2', '--seed', '5']
    one = infer.main([*common, '--num-images', '3', '--batch-size', '1',
                      '--out-dir', str(tmp_path / 'one')])
    three = infer.main([*common, '--num-images', '3', '--batch-size', '3',
                        '--out-dir', str(tmp_path / 'three')])
    two = infer.main([*common, '--num-images', '2', '--out-dir', str(tmp_path / 'two')])
    pixels = [[np.asarray(Image.open(p), dtype=np.int16) for p in run] for run in (one, three, two)]
    for a, b in zip(pixels[0], pixels[1]):
        assert np.abs(a - b).max() <= 1  # batched vs single matmuls: at most a rounding step
    for a, b in zip(pixels[2], pixels[1]):
        assert np.abs(a - b).max() <= 1
    assert np.abs(pixels[1][0] - pixels[1][1]).mean() > 5  # distinct noise per image


def test_a_prompt_over_the_token_limit_is_named_in_one_warning(embedding_file, tmp_path):
    long_prompt = 'a <cat-toy> ' + ' '.join(['on a very long and winding road'] * 12)
    # A real process: mmengine's logger keeps the stdout it was created with.
    result = run_tool('tools/infer.py', TINY_CONFIG, '--embeddings', embedding_file,
                      '--prompt', long_prompt, '--prompt', 'a <cat-toy> bag', '--num-images', '2',
                      '--batch-size', '1', '--steps', '2', '--out-dir', str(tmp_path / 'o'))
    assert len(list((tmp_path / 'o').glob('*.png'))) == 4
    warnings = [line for line in (result.stdout + result.stderr).splitlines()
                if 'WARNING' in line.upper() and 'tokens' in line]
    assert len(warnings) == 1, warnings  # once, though the prompt is sampled in two batches
    assert repr(long_prompt) in warnings[0] and 'reads 77' in warnings[0]


def test_save_new_sample_takes_the_next_free_name(tmp_path):
    from mmti.fileio import sample_filename, save_new_sample
    image = Image.new('RGB', (8, 8), 'red')
    (tmp_path / sample_filename('x', 1, 0)).write_bytes(b'old')
    (tmp_path / sample_filename('x', 1, 0, copy=2)).write_bytes(b'old 2')
    path = save_new_sample(image, tmp_path, 'x!', 1, 0)
    assert path.name == 'x_seed1_0-3.png'
    assert (tmp_path / 'x_seed1_0.png').read_bytes() == b'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'x_seed1_0-2.png', 'x_seed1_0-3.png', 'x_seed1_0.png']  # no temporary file left
