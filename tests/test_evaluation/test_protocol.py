"""mmti.evaluation.evaluate_concept on the bundled tiny SD model and a tiny CLIP."""
import math

import pytest
from mmti_testing import CAT_TOY, build_tiny_model
from PIL import Image
from test_clip_scorer import save_tiny_clip

from mmti.evaluation import (
    EDIT_PROMPTS,
    ClipScorer,
    evaluate_concept,
    verdict,
    remove_placeholder,
)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    scorer = ClipScorer(str(save_tiny_clip(tmp_path_factory.mktemp('clip'))))
    images = [Image.open(p).convert('RGB') for p in sorted(CAT_TOY.glob('*.png'))]
    return build_tiny_model(), scorer, images


def test_edit_prompts_are_templates():
    assert len(EDIT_PROMPTS) >= 4
    assert all(p.count('{}') == 1 for p in EDIT_PROMPTS)
    assert 'a photo of {} on the beach' in EDIT_PROMPTS
    assert all('{}' not in remove_placeholder(p.format('<x>'), '<x>') for p in EDIT_PROMPTS)


def test_rows_of_the_protocol(setup):
    model, scorer, images = setup
    rows = evaluate_concept(model, scorer, '<cat-toy>', images[:3], held_out_images=images[3:],
                            initializer_word='toy', num_samples=2, steps=2, seed=0,
                            edit_prompts=EDIT_PROMPTS[:3])
    assert list(rows) == ['learned', 'initializer', 'image only']
    for row in rows.values():
        for key in ('image_similarity', 'text_similarity'):
            assert isinstance(row[key], float) and math.isfinite(row[key])
            assert -1.0 <= row[key] <= 1.0
    assert rows['learned']['num_images'] == rows['initializer']['num_images'] == 2 * (1 + 3)
    assert rows['image only']['num_images'] == 2
    # A fresh placeholder starts as a copy of "toy": the two renders match.
    assert rows['learned']['image_similarity'] == pytest.approx(
        rows['initializer']['image_similarity'], abs=1e-4)


def test_optional_rows_and_default_prompts(setup):
    model, scorer, images = setup
    rows = evaluate_concept(model, scorer, '<cat-toy>', images, num_samples=1, steps=1)
    assert list(rows) == ['learned']
    assert rows['learned']['num_images'] == 1 + len(EDIT_PROMPTS)


def test_bad_arguments_are_refused(setup):
    model, scorer, images = setup
    with pytest.raises(ValueError, match='no concept'):
        evaluate_concept(model, scorer, '<dog>', images, num_samples=1, steps=1)
    with pytest.raises(ValueError, match='training image'):
        evaluate_concept(model, scorer, '<cat-toy>', [], num_samples=1, steps=1)
    with pytest.raises(ValueError, match='exactly one'):
        evaluate_concept(model, scorer, '<cat-toy>', images, edit_prompts=['no slot'])


def _rows(learned, initializer=(0.40, 0.70), real=(0.68, 0.39)):
    row = lambda pair: {'image_similarity': pair[0], 'text_similarity': pair[1]}  # noqa: E731
    return {'learned': row(learned), 'initializer': row(initializer), 'image only': row(real)}


@pytest.mark.parametrize('learned, start', [
    ((0.63, 0.73), 'learned: 82% of the image-similarity gap'),
    ((0.55, 0.73), 'partly learned: 54%'),
    ((0.45, 0.73), 'not learned: 18%'),
])
def test_verdict_reads_the_gap_closed_and_editability(learned, start):
    assert verdict(_rows(learned)).startswith(start)
    assert 'edit prompts still work' in verdict(_rows(learned))
    assert 'edit prompts weaken' in verdict(_rows((learned[0], 0.5)))


def test_verdict_needs_baselines_that_differ():
    assert verdict({'learned': _rows((0.6, 0.7))['learned']}).startswith('no verdict')
    assert verdict(_rows((0.6, 0.7), initializer=(0.7, 0.7))).startswith('no verdict')
