"""tools/make_toy_concepts.py: deterministic, and the committed data/toy_concepts is its output."""
from mmti_testing import REPO_ROOT
from tool_runner import run_tool

from mmti.toy_world import HELD_OUT_CONCEPTS, concept_scenes, concept_template

COMMITTED = REPO_ROOT / 'data' / 'toy_concepts'


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def test_rerun_reproduces_the_committed_folder_byte_for_byte(tmp_path):
    out = tmp_path / 'concepts'
    run_tool('tools/make_toy_concepts.py', '--out', str(out), '--seed', '0', '--size', '32')
    assert _files(out) == _files(COMMITTED)


def test_training_images_have_caption_files_that_leave_out_the_concept():
    for name in HELD_OUT_CONCEPTS:
        train = COMMITTED / name / 'train'
        images = sorted(train.glob('*.png'))
        scenes = concept_scenes(name, len(images), seed=0)
        for image, scene in zip(images, scenes):
            text = image.with_suffix('.txt').read_text().strip()
            assert text == concept_template(scene)
            for word in HELD_OUT_CONCEPTS[name].values():
                assert word not in text.split()  # the concept is only in {}
        assert not list((COMMITTED / name / 'held_out').glob('*.txt'))


def test_existing_folder_is_kept_without_force(tmp_path):
    out = tmp_path / 'concepts'
    out.mkdir()
    (out / 'mine.txt').write_text('keep me')
    result = run_tool('tools/make_toy_concepts.py', '--out', str(out), check=False)
    assert result.returncode != 0 and '--force' in result.stderr
    assert (out / 'mine.txt').read_text() == 'keep me'
