"""mmti.evaluation.concept_scores: the gap closed and text ratio that verdict() puts in words."""
import pytest

from mmti.evaluation import verdict
from mmti.evaluation.concept_scores import gap_closed, text_ratio


def rows(learned_image, learned_text, initializer_image=0.50, initializer_text=0.30,
         real_image=0.90):
    return {'learned': {'image_similarity': learned_image, 'text_similarity': learned_text},
            'initializer': {'image_similarity': initializer_image,
                            'text_similarity': initializer_text},
            'image only': {'image_similarity': real_image, 'text_similarity': 0.1}}


def test_gap_closed_and_text_ratio_are_the_verdicts_numbers():
    measured = rows(learned_image=0.83, learned_text=0.285)
    assert gap_closed(measured) == pytest.approx((0.83 - 0.50) / (0.90 - 0.50))  # 82.5%
    assert text_ratio(measured) == pytest.approx(0.95)
    said = verdict(measured)
    assert said.startswith('learned: 82% of the image-similarity gap')  # 82.5% rounds to 82
    assert 'text similarity 95% of the initializer' in said


def test_a_learned_row_below_the_initializer_is_a_negative_gap():
    assert gap_closed(rows(learned_image=0.40, learned_text=0.3)) == pytest.approx(-0.25)


def test_missing_rows_and_an_empty_gap_are_refused_with_the_fix():
    measured = rows(0.8, 0.3)
    del measured['image only']
    with pytest.raises(ValueError, match="'image only' row.*held-out images"):
        gap_closed(measured)
    assert text_ratio(measured) == pytest.approx(1.0)  # needs no real images
    with pytest.raises(ValueError, match='as high as the real images'):
        gap_closed(rows(0.8, 0.3, initializer_image=0.9, real_image=0.9))
