"""A synthetic world of captioned shapes, deterministic from a seed.

Small enough to pretrain a toy text-to-image model on a CPU, with a few
attribute combinations (``HELD_OUT_CONCEPTS``) that pretraining never shows,
so Textual Inversion can be tested on concepts the model has not seen.
"""
from .sampling import (CONCEPT_ATTRIBUTES, HELD_OUT_CONCEPTS, concept_scenes, is_held_out, matches,
                       near_twins, sample_scene, scene_for_index, vary_one)
from .scene import (CONTEXT_ATTRIBUTES, LOOK_ATTRIBUTES, Scene, caption, concept_template,
                    render_scene)
from .vocabulary import (BACKGROUNDS, COLOURS, PATTERNS, POSITION_PHRASES, POSITIONS, SHAPES,
                         SIZES, all_words)

__all__ = [
    'BACKGROUNDS', 'COLOURS', 'CONCEPT_ATTRIBUTES', 'CONTEXT_ATTRIBUTES', 'HELD_OUT_CONCEPTS',
    'LOOK_ATTRIBUTES', 'PATTERNS', 'POSITIONS', 'POSITION_PHRASES', 'SHAPES', 'SIZES', 'Scene',
    'all_words', 'caption', 'concept_scenes', 'concept_template', 'is_held_out', 'matches',
    'near_twins', 'render_scene', 'sample_scene', 'scene_for_index', 'vary_one'
]
