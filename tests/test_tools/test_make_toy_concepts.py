"""tools/dev/make_toy_concepts.py: deterministic, and the committed data/toy_concepts is its output."""
from mmti_testing import REPO_ROOT
from tool_runner import run_tool

from projects.toy_world.world import HELD_OUT_CONCEPTS, concept_scenes, concept_template

COMMITTED = REPO_ROOT / 'data' / 'toy_concepts'


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def test_rerun_reproduces_the_committed_folder_byte_for_byte(tmp_path):
    out = tmp_path / 'concepts'
    run_tool('tools/dev/make_toy_concepts.py', '--out', str(out), '--seed', '0', '--size', '32')
    assert _files(out) == _files(COMMITTED)


def test_every_image_has_a_caption_file_that_leaves_out_the_concept():
    for name in HELD_OUT_CONCEPTS:
        images = [*sorted((COMMITTED / name / 'train').glob('*.png')),
                  *sorted((COMMITTED / name / 'held_out').glob('*.png'))]
        assert len(images) == 13
        scenes = concept_scenes(name, len(images), seed=0)  # train first, then held out
        for image, scene in zip(images, scenes):
            text = image.with_suffix('.txt').read_text().strip()
            assert text == concept_template(scene)
            for word in HELD_OUT_CONCEPTS[name].values():
                assert word not in text.split()  # the concept is only in {}


def test_existing_folder_is_kept_without_force(tmp_path):
    out = tmp_path / 'concepts'
    out.mkdir()
    (out / 'mine.txt').write_text('keep me')
    result = run_tool('tools/dev/make_toy_concepts.py', '--out', str(out), check=False)
    assert result.returncode != 0 and '--force' in result.stderr
    assert (out / 'mine.txt').read_text() == 'keep me'
