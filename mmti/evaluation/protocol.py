"""The evaluation protocol of Gal et al. 2022 (Fig. 10) for one concept.

Three points on the reconstruction/editability plane:

* ``learned``: samples of the learned placeholder.
* ``initializer``: the same prompts with the initializer word instead
  ("prompt only"; the paper's human-written description baseline).
* ``image only``: real held-out images of the concept, which reconstruct the
  concept well but ignore every edit prompt.

Reconstruction (image similarity) is measured on samples of
:data:`RECONSTRUCTION_PROMPT` against the training images; editability (text
similarity) on samples of :data:`EDIT_PROMPTS` against each prompt with the
placeholder removed, the same text targets for every row.
"""
import math
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from .concept_scores import gap_closed, text_ratio
from .similarity import image_similarity, remove_placeholder, text_similarity

RECONSTRUCTION_PROMPT = 'a photo of {}'

EDIT_PROMPTS = (
    'a photo of {} on the beach',
    'a painting of {}',
    '{} in the jungle',
    'a {} made of lego',
    'a photo of {} in the snow',
    'an oil painting of {} in the style of van gogh',
    'a {} floating in space',
    'a photo of {} on a wooden table in a kitchen',
)


def _render(model, prompt: str | list[str], num_samples: int, steps: int, seed: int,
            size: int | None, guidance_scale: float) -> list[Image.Image]:
    return model.infer(prompt, num_inference_steps=steps, height=size, width=size,
                       guidance_scale=guidance_scale,
                       num_images_per_prompt=num_samples, seed=seed,
                       show_progress=False)['samples']


SIZE_MULTIPLE = 8  # diffusers' pipelines need height and width divisible by 8


def check_protocol_numbers(settings: dict, name: Callable[[str], str]) -> None:
    """Refuse counts, sizes and scales of :func:`evaluate_concept` out of range.

    Args:
        settings: Any of ``num_samples``, ``steps``, ``size``, ``guidance_scale``.
        name: Where a key was set, for the message (an option, a config key).
    """
    for key in ('num_samples', 'steps'):
        value = settings.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'{name(key)} is {value!r}; it must be a whole number of at least 1.')
    size = settings.get('size')
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0
                             or size % SIZE_MULTIPLE):
        raise ValueError(f'{name("size")} is {size!r}; it must be a positive multiple of '
                         f'{SIZE_MULTIPLE} (e.g. 512), or unset for the model\'s own size.')
    scale = settings.get('guidance_scale', 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f'{name("guidance_scale")} is {scale!r}; it must be a finite number '
                         '(e.g. 7.5).')


def _generated_row(model, scorer, word: str, placeholder: str, training_features: torch.Tensor,
                   reconstruction_prompt: list[str], edit_prompts: Sequence[str],
                   text_features: torch.Tensor, num_samples: int, steps: int, seed: int,
                   size: int | None, guidance_scale: float, progress) -> dict:
    recon = _render(model, [p.format(word) for p in reconstruction_prompt], num_samples, steps,
                    seed, size, guidance_scale)
    progress(len(recon))
    recon_features = scorer.image_features(recon)
    edit_features = []
    for template in edit_prompts:
        images = _render(model, template.format(word), num_samples, steps, seed, size,
                         guidance_scale)
        progress(len(images))
        edit_features.append(scorer.image_features(images))
    # Image i of the edits was made from prompt i // num_samples.
    targets = text_features.repeat_interleave(num_samples, dim=0)
    return {
        'image_similarity': image_similarity(recon_features, training_features, same_set=False),
        'text_similarity': text_similarity(torch.cat(edit_features), targets),
        'num_images': len(recon) + sum(len(f) for f in edit_features),
    }


def evaluate_concept(model, scorer, placeholder: str,
                     training_images: Sequence[Image.Image],
                     held_out_images: Sequence[Image.Image] | None = None,
                     initializer_word: str | None = None,
                     num_samples: int = 8,
                     steps: int = 25,
                     seed: int = 0,
                     size: int | None = None,
                     edit_prompts: Sequence[str] = EDIT_PROMPTS,
                     reconstruction_prompt: str | Sequence[str] = RECONSTRUCTION_PROMPT,
                     guidance_scale: float = 7.5,
                     progress=None) -> dict[str, dict]:
    """Image and text similarity of a learned concept and its baselines.

    Args:
        model: A :class:`~mmti.models.TextualInversion` (anything with its
            ``infer``) that knows ``placeholder``.
        scorer: A :class:`~mmti.evaluation.ClipScorer` (anything with
            ``image_features`` and ``text_features``).
        placeholder: The learned token, e.g. ``'<cat-toy>'``.
        training_images: The concept's training images (PIL).
        held_out_images: Real images of the concept not used in training;
            gives the "image only" row.
        initializer_word: A plain word for the concept (e.g. ``'toy'``);
            gives the "initializer" ("prompt only") row.
        num_samples: Images rendered per prompt.
        steps: Denoising steps per image.
        seed: Seed of every prompt's renders (the rows see the same noise).
        size: Render height and width; the model's native size when None.
        guidance_scale: Classifier-free guidance of every render (7.5 is
            SD's usual; a small model over-saturates at that).
        edit_prompts: Templates with one ``{}`` for the concept.
        reconstruction_prompt: Template whose samples are compared with the
            training images (the paper's "a photo of S*"); a model trained on
            other captions (the toy world's) needs its own. A list of
            templates renders each (``num_samples`` times): e.g. the captions
            of the held-out images, so the generated rows show the same
            scenes as the "image only" row and differ from it only in how
            the concept is drawn.

        progress: Called with the number of images after each render (for a
            progress bar); None for silence.

    Returns:
        dict: ``{name: {'image_similarity', 'text_similarity', 'num_images'}}``
        with rows ``'learned'``, ``'initializer'`` (when given) and
        ``'image only'`` (when held-out images are given).
    """
    if num_samples < 1 or steps < 1:
        raise ValueError('num_samples and steps must be at least 1.')
    if not training_images:
        raise ValueError('evaluate_concept needs at least one training image.')
    edit_prompts = list(edit_prompts)
    if not edit_prompts or any(p.count('{}') != 1 for p in edit_prompts):
        raise ValueError('edit_prompts must be templates with exactly one "{}" each.')
    if isinstance(reconstruction_prompt, str):
        reconstruction_prompt = [reconstruction_prompt]
    reconstruction_prompt = list(reconstruction_prompt)
    if not reconstruction_prompt or any(p.count('{}') != 1 for p in reconstruction_prompt):
        raise ValueError('reconstruction_prompt must be a template (or a list of templates) with '
                         f'exactly one "{{}}" each, got {reconstruction_prompt!r}.')
    concepts = getattr(model, 'concepts', None)
    if concepts is not None and placeholder not in concepts:
        raise ValueError(f'The model has no concept {placeholder!r} (it has {list(concepts)}).')

    training_features = scorer.image_features(training_images)
    texts = [remove_placeholder(p.format(placeholder), placeholder) for p in edit_prompts]
    text_features = scorer.text_features(texts)
    common = dict(training_features=training_features,
                  reconstruction_prompt=reconstruction_prompt, edit_prompts=edit_prompts,
                  text_features=text_features, num_samples=num_samples, steps=steps,
                  seed=seed, size=size, guidance_scale=guidance_scale,
                  progress=progress or (lambda count: None))

    rows = {'learned': _generated_row(model, scorer, placeholder, placeholder, **common)}
    if initializer_word:
        rows['initializer'] = _generated_row(model, scorer, initializer_word, placeholder, **common)
    if held_out_images:
        held_out = scorer.image_features(held_out_images)
        rows['image only'] = {
            'image_similarity': image_similarity(held_out, training_features, same_set=False),
            # Every held-out image against every edit prompt.
            'text_similarity': sum(text_similarity(held_out, t[None]) for t in text_features)
                               / len(text_features),
            'num_images': len(held_out),
        }
    return rows


def verdict(rows: dict) -> str:
    """One line saying whether the concept was learned, from :func:`evaluate_concept`'s rows.

    Image similarity is read as the share of the gap closed between the
    initializer word (the prompt-only baseline) and the held-out real images:
    80% or more is "learned", 50-80% "partly learned", less "not learned".
    Text similarity is compared with the initializer's: 90% or more keeps the
    concept editable.
    """
    if not all(rows.get(name) for name in ('learned', 'initializer', 'image only')):
        return 'no verdict: it needs the initializer word and held-out images to compare with.'
    try:
        gap = gap_closed(rows)
    except ValueError:  # the initializer already scores as high as the real images
        return ('no verdict: the initializer word already scores as high as the real images, so '
                'image similarity cannot show learning here.')
    text = text_ratio(rows)
    state = 'learned' if gap >= 0.8 else 'partly learned' if gap >= 0.5 else 'not learned'
    edits = ('and edit prompts still work' if text >= 0.9 else
             'but edit prompts weaken (the rows may have overfitted)')
    return (f'{state}: {gap:.0%} of the image-similarity gap from the initializer word to the '
            f'real images closed, text similarity {text:.0%} of the initializer\'s, {edits}.')
