"""ConceptSimilarityMetric: evaluate_concept's numbers through mmengine's test-loop pieces."""
import pytest
from mmengine.dataset import pseudo_collate
from mmti_testing import CAT_TOY, build_tiny_model, save_tiny_clip

from mmti.evaluation import (ClipScorer, ConceptEvaluationPrompts, ConceptSimilarityMetric,
                             evaluate_concept, verdict)
from mmti.datasets.textual_inversion_dataset import list_concept_images, load_rgb

EDITS = ['a painting of {}']


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    return str(save_tiny_clip(tmp_path_factory.mktemp('clip')))


def test_metric_gives_evaluate_concepts_rows(clip):
    model = build_tiny_model()
    dataset = ConceptEvaluationPrompts(reconstruction_prompt='a photo of {}', edit_prompts=EDITS)
    assert len(dataset) == 1
    batch = pseudo_collate([dataset[0]])  # as the test dataloader hands it to test_step
    outputs = model.test_step(batch)  # an evaluation request passes through unrendered
    metric = ConceptSimilarityMetric(clip=clip, concept_dir=str(CAT_TOY), initializer='toy',
                                     num_samples=1, steps=1, seed=2)
    metric.model = model
    metric.process(batch, outputs)
    metrics = metric.evaluate(size=1)

    images = [load_rgb(f) for f in list_concept_images(CAT_TOY)]
    rows = evaluate_concept(model, ClipScorer(clip), '<cat-toy>', images, initializer_word='toy',
                            num_samples=1, steps=1, seed=2, edit_prompts=EDITS,
                            reconstruction_prompt=['a photo of {}'])
    assert metrics == {'image_similarity': rows['learned']['image_similarity'],
                       'text_similarity': rows['learned']['text_similarity'],
                       'initializer/image_similarity': rows['initializer']['image_similarity'],
                       'initializer/text_similarity': rows['initializer']['text_similarity'],
                       'verdict': verdict(rows)}


def test_metric_without_model_says_how_to_give_it(clip):
    metric = ConceptSimilarityMetric(clip=clip, concept_dir=str(CAT_TOY))
    metric.results.append({'reconstruction_prompt': ['a {}'], 'edit_prompts': EDITS})
    with pytest.raises(RuntimeError, match='ConceptSimilarityHook'):
        metric.compute_metrics(metric.results)


def test_dataset_has_one_item():
    dataset = ConceptEvaluationPrompts()
    with pytest.raises(IndexError):
        dataset[1]
