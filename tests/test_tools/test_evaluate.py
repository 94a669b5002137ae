"""tools/evaluate.py: the paper's CLIP evaluation end to end on the tiny models."""
import json
import shutil

import pytest
import torch
from mmti_testing import CAT_TOY, build_tiny_model, save_tiny_clip
from PIL import Image
from tool_runner import TINY_CONFIG, assert_quiet, concept_folder_lines, run_tool

@pytest.fixture(scope='module')
def tiny_clip(tmp_path_factory):
    return str(save_tiny_clip(tmp_path_factory.mktemp('clip')))


@pytest.fixture(scope='module')
def embedding_file(tmp_path_factory):
    model = build_tiny_model()
    with torch.no_grad():
        rows = model.token_embedding.concept_rows('<cat-toy>')
        rows.normal_(generator=torch.Generator().manual_seed(0))
    return model.save_embeddings(str(tmp_path_factory.mktemp('emb') / 'learned_embeds.safetensors'))


def test_evaluate_cli_writes_metrics_and_plot(tiny_clip, embedding_file, tmp_path):
    held_out = tmp_path / 'held_out'
    held_out.mkdir()
    for name in ('3.png', '4.png'):
        shutil.copy(CAT_TOY / name, held_out / name)
    out = tmp_path / 'out'
    result = run_tool('tools/evaluate.py', TINY_CONFIG, '--embeddings', embedding_file,
                      '--clip', tiny_clip, '--concept-dir', str(CAT_TOY),
                      '--held-out-dir', str(held_out), '--num-samples', '1', '--steps', '1',
                      '--seed', '3', '--out-dir', str(out))
    metrics = json.loads((out / 'metrics.json').read_text())
    rows = metrics['rows']
    assert list(rows) == ['learned', 'initializer', 'image only']
    for row in rows.values():
        assert -1.0 <= row['image_similarity'] <= 1.0 and -1.0 <= row['text_similarity'] <= 1.0
    assert metrics['settings']['initializer'] == 'toy'  # from the config
    assert metrics['settings']['placeholder'] == '<cat-toy>'
    assert '| learned |' in result.stdout and '| image only |' in result.stdout
    assert_quiet(result)  # no weight-loading bars or backend notices around the table
    # The progress bar counted every rendered image: (1 reconstruction + 8 edits) x 2 rows.
    assert '18/18' in result.stderr
    with Image.open(out / 'similarity.png') as image:
        assert image.format == 'PNG' and image.size[0] > 100
    assert not list(out.glob('.*.tmp'))


@pytest.mark.parametrize('case', ['no clip', 'clip without config', 'clip without weights',
                                  'no concept dir', 'empty concept dir'])
def test_evaluate_cli_bad_input_is_one_line(case, tiny_clip, embedding_file, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    clip, concept = tiny_clip, str(CAT_TOY)
    expected = {'no clip': 'does not exist', 'clip without config': 'no config.json',
                'clip without weights': 'no weights',
                'no concept dir': 'does not exist or is not a folder', 'empty concept dir': 'has no images'}[case]
    if case == 'no clip':
        clip = str(tmp_path / 'missing')
    elif case == 'clip without config':
        clip = str(empty)
    elif case == 'clip without weights':
        clip = str(tmp_path / 'clip')
        shutil.copytree(tiny_clip, clip)
        for weights in (tmp_path / 'clip').glob('*.safetensors'):
            weights.unlink()
    elif case == 'no concept dir':
        concept = str(tmp_path / 'missing')
    else:
        concept = str(empty)
    result = run_tool('tools/evaluate.py', TINY_CONFIG, '--embeddings', embedding_file,
                      '--clip', clip, '--concept-dir', concept, '--out-dir', str(tmp_path / 'o'),
                      check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('tools/evaluate.py: error: ') and expected in lines[0]
    assert not (tmp_path / 'o').exists()


def test_evaluate_cli_takes_clip_prompts_and_images_from_the_config(tiny_clip, embedding_file,
                                                                    tmp_path):
    config = tmp_path / 'with_evaluation.py'
    config.write_text(
        f"_base_ = [{TINY_CONFIG!r}]\n"
        f"evaluation = dict(clip={tiny_clip!r}, num_samples=1, steps=1,\n"
        "                  reconstruction_prompt='a drawing of {}',\n"
        "                  edit_prompts=['{} at night', 'a small {}'])\n")
    out = tmp_path / 'out'
    result = run_tool('tools/evaluate.py', str(config), '--embeddings', embedding_file,
                      '--out-dir', str(out))
    settings = json.loads((out / 'metrics.json').read_text())['settings']
    assert settings['clip'] == tiny_clip
    assert settings['concept_dir'] == 'data/cat_toy'  # the config's data_root
    assert settings['reconstruction_prompt'] == 'a drawing of {}'
    assert settings['edit_prompts'] == ['{} at night', 'a small {}']
    # 1 reconstruction + 2 edit prompts, one sample each.
    assert json.loads((out / 'metrics.json').read_text())['rows']['learned']['num_images'] == 3
    assert '| learned |' in result.stdout


def test_a_held_out_folder_beside_data_root_follows_the_concept_dir(tiny_clip, embedding_file,
                                                                   tmp_path):
    for split in ('train', 'held_out'):
        shutil.copytree(CAT_TOY, tmp_path / 'mug' / split)
    config = tmp_path / 'beside.py'
    config.write_text(f"_base_ = [{TINY_CONFIG!r}]\n"
                      f"evaluation = dict(clip={tiny_clip!r}, num_samples=1, steps=1,\n"
                      "                  held_out_dir='{data_root}/../held_out')\n")
    out = tmp_path / 'out'
    run_tool('tools/evaluate.py', str(config), '--embeddings', embedding_file, '--out-dir',
             str(out), '--concept-dir', str(tmp_path / 'mug' / 'train'))
    settings = json.loads((out / 'metrics.json').read_text())['settings']
    assert settings['held_out_dir'] == str(tmp_path / 'mug' / 'held_out')

    # Through a link to the training folder: '..' is its target's parent, as the
    # file system reads it, not the link's.
    (tmp_path / 'links').mkdir()
    (tmp_path / 'links' / 'mug').symlink_to(tmp_path / 'mug' / 'train')
    from mmti.datasets.evaluation_inputs import resolve_held_out_dir
    assert resolve_held_out_dir('{data_root}/../held_out', str(tmp_path / 'links' / 'mug')) == \
        str((tmp_path / 'mug' / 'held_out').resolve())


@pytest.mark.parametrize('evaluation, expected', [
    ('None', 'no CLIP model given: pass --clip'),
    ("dict(clip='x', edit_prompt=['{}'])", "unknown keys ['edit_prompt']"),
])
def test_evaluate_cli_config_errors_are_one_line(evaluation, expected, embedding_file, tmp_path):
    config = tmp_path / 'cfg.py'
    config.write_text(f"_base_ = [{TINY_CONFIG!r}]\nevaluation = {evaluation}\n")
    result = run_tool('tools/evaluate.py', str(config), '--embeddings', embedding_file,
                      '--out-dir', str(tmp_path / 'o'), check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith('tools/evaluate.py: error: ') and expected in lines[0]


def test_reconstruct_held_out_captions_renders_each_held_out_caption(tiny_clip, embedding_file,
                                                                     tmp_path):
    held_out = tmp_path / 'held_out'
    held_out.mkdir()
    for i, name in enumerate(('3.png', '4.png')):
        shutil.copy(CAT_TOY / name, held_out / name)
        (held_out / name.replace('.png', '.txt')).write_text(f'a {{}} on shelf {i}\n')
    out = tmp_path / 'out'
    result = run_tool('tools/evaluate.py', TINY_CONFIG, '--embeddings', embedding_file,
                      '--clip', tiny_clip, '--held-out-dir', str(held_out),
                      '--reconstruct-held-out-captions', '--num-samples', '1', '--steps', '1',
                      '--out-dir', str(out))
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['settings']['reconstruction_prompt'] == ['a {} on shelf 0', 'a {} on shelf 1']
    # 2 held-out captions + 8 default edit prompts, one sample each.
    assert metrics['rows']['learned']['num_images'] == 10
    # The captions are read from the held-out folder a second time; its line is shown once.
    folders = concept_folder_lines(result)
    assert len(folders) == 2 and len(set(folders)) == 2, folders


@pytest.mark.parametrize('case', ['no held-out dir', 'missing caption file'])
def test_reconstruct_held_out_captions_errors(case, tiny_clip, embedding_file, tmp_path):
    held_out = tmp_path / 'held_out'
    held_out.mkdir()
    shutil.copy(CAT_TOY / '3.png', held_out / '3.png')
    args = ['--held-out-dir', str(held_out)] if case == 'missing caption file' else []
    result = run_tool('tools/evaluate.py', TINY_CONFIG, '--embeddings', embedding_file, '--clip',
                      tiny_clip, '--reconstruct-held-out-captions', *args,
                      '--out-dir', str(tmp_path / 'o'), check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    expected = 'needs --held-out-dir' if case == 'no held-out dir' else 'has no caption file 3.txt'
    assert expected in lines[0]
    assert not (tmp_path / 'o').exists()


def test_images_are_read_as_training_reads_them(tmp_path):
    """Issue 13: EXIF rotation applied and transparency on white, as in training."""
    from tool_runner import load_tool
    folder = tmp_path / 'concept'
    folder.mkdir()
    tall = Image.new('RGB', (40, 20), 'red')
    exif = tall.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to view upright
    tall.save(folder / 'a_rotated.jpg', exif=exif)
    clear = Image.new('RGBA', (16, 16), (0, 0, 0, 0))
    clear.save(folder / 'b_transparent.png')
    (folder / '.hidden.png').write_bytes(b'not an image, and hidden')
    images = load_tool('evaluate').load_images(str(folder), '--concept-dir')
    assert [im.size for im in images] == [(20, 40), (16, 16)]
    assert all(im.mode == 'RGB' for im in images)
    assert images[1].getpixel((3, 3)) == (255, 255, 255)


def test_a_file_with_other_row_count_names_the_option_that_fixes_it(tiny_clip, tmp_path):
    import torch
    from mmti.fileio import write_embedding_file
    two_rows = write_embedding_file(tmp_path / 'learned_embeds.safetensors',
                                    {'<cat-toy>': torch.randn(2, 32)})  # the config trains 1
    result = run_tool('tools/evaluate.py', TINY_CONFIG, '--embeddings', str(two_rows),
                      '--clip', tiny_clip, '--concept-dir', str(CAT_TOY), '--out-dir',
                      str(tmp_path / 'o'), check=False)
    assert result.returncode == 2
    assert 'pass --cfg-options model.num_vectors=2' in result.stderr
    assert 'in the config' not in result.stderr
