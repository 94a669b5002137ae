"""CLIP-space evaluation of learned concepts (Gal et al. 2022, Fig. 10)."""
from .clip_scorer import CLIP_MEAN, CLIP_STD, ClipScorer, preprocess_images
from .concept_scores import concept_numbers, gap_closed, text_ratio
from .concept_similarity_metric import (ConceptEvaluationPrompts, ConceptSimilarityHook,
                                        ConceptSimilarityMetric)
from .plot import line_chart, scatter_plot
from .protocol import EDIT_PROMPTS, RECONSTRUCTION_PROMPT, evaluate_concept, verdict
from .similarity import image_similarity, remove_placeholder, text_similarity

__all__ = ['CLIP_MEAN', 'CLIP_STD', 'ClipScorer', 'ConceptEvaluationPrompts',
           'ConceptSimilarityHook', 'ConceptSimilarityMetric', 'EDIT_PROMPTS', 'RECONSTRUCTION_PROMPT',
           'concept_numbers', 'evaluate_concept', 'gap_closed', 'image_similarity',
           'preprocess_images', 'remove_placeholder', 'line_chart', 'scatter_plot', 'text_ratio',
           'text_similarity', 'verdict']
