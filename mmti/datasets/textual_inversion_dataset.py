"""The few images of one concept, each paired with a templated caption."""
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from glob import escape as glob_escape
from pathlib import Path

import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.logging import print_log
from PIL import Image
from torch.utils.data import Dataset

from mmti.registry import DATASETS, TRANSFORMS
from . import transforms  # noqa: F401  (registers the transforms)
from .image_loading import (DEFAULT_SHORTER_SIDE, IMAGE_EXTENSIONS, MAX_ASPECT_RATIO,
                            DecodedImage, decode_image, list_concept_images, load_rgb)
from .templates import fill_template, load_templates, read_template_file
from .transforms.resize import _FILTERS, ResizeShorterSide

__all__ = ['IMAGE_EXTENSIONS', 'TextualInversionDataset', 'list_concept_images', 'load_rgb',
           'read_caption_file', 'decode_target']


def caption_file(image_path: Path) -> Path:
    """``<image name>.txt`` beside the image; ``.TXT`` and other letter cases of
    the ending count too, as they do for image endings (``.PNG``)."""
    path = image_path.with_suffix('.txt')
    if path.is_file():
        return path
    others = sorted(p for p in image_path.parent.glob(f'{glob_escape(image_path.stem)}.*')
                    if p.suffix.lower() == '.txt' and p.stem == image_path.stem and p.is_file())
    return others[0] if others else path


def read_caption_file(image_path: Path) -> list[str]:
    """The templates of one image: the lines of ``<image name>.txt`` beside it."""
    path = caption_file(image_path)
    if not path.is_file():
        raise FileNotFoundError(
            f'caption_files=True but {image_path.name} has no caption file {path.name} beside '
            'it; write one (a line like "a {} on a red sofa") or set caption_files=False.')
    templates = read_template_file(path)
    bad = [t for t in templates if '{}' not in t]
    if not templates or bad:
        raise ValueError(
            f'Caption file {path} needs one or more lines, each with "{{}}" where the '
            f'placeholder goes (like "a {{}} on a red sofa"); found {(bad or ["nothing"])[:3]}.')
    return templates


def decode_target(pipeline: Sequence) -> tuple[int, Image.Resampling, str]:
    """Shorter side and filter to keep the decoded images at, and why.

    A pipeline that starts with ``ResizeShorterSide`` needs exactly its size;
    reducing with its own size rule and filter leaves that transform nothing
    to do, so the samples are pixel for pixel the same as from the full-size
    image. Any other pipeline keeps ``DEFAULT_SHORTER_SIDE`` (or the largest
    ``size`` one of its transforms asks for), reduced with LANCZOS.
    """
    first = pipeline[0] if len(pipeline) else None
    if isinstance(first, ResizeShorterSide):
        return first.size, _FILTERS[first.interpolation], "the pipeline's ResizeShorterSide"
    sizes = [t.size for t in pipeline if isinstance(getattr(t, 'size', None), int)]
    return (max([DEFAULT_SHORTER_SIDE, *sizes]), Image.Resampling.LANCZOS,
            'the pipeline does not start with ResizeShorterSide')


def _decode_summary(root, paths: list[Path], decoded: list[DecodedImage], side: int,
                    why: str) -> str:
    """One line: how many images were reduced, and any high-bit-depth scaling."""
    reduced = [d for d in decoded if d.reduced]
    line = f'Decoded {len(decoded)} images from {root}'
    if reduced:
        largest = max(reduced, key=lambda d: d.original_size[0] * d.original_size[1])
        line += (f'; kept {len(reduced)} reduced to {side} px on the shorter side ({why}; '
                 f'largest {largest.original_size[0]}x{largest.original_size[1]})')
    notes = [f'{p.name}: {d.range_note}' for p, d in zip(paths, decoded) if d.range_note]
    return line + (f'; scaled to 8 bits: {", ".join(notes)}' if notes else '')


def refuse_mmagic_keys(data_root: str, concept_dir, placeholder, template,
                       with_image_reference) -> None:
    """Answer mmagic's dataset keys with the mmti key that does the job, in one line.

    An mmagic config ported as is would otherwise stop at an unexpected
    keyword argument, naming nothing to use instead.
    """
    if concept_dir is not None:
        joined = os.path.join(str(data_root), str(concept_dir))
        raise ValueError(f"concept_dir is mmagic's key; mmti's data_root is the concept folder "
                         f"itself: set data_root={joined!r} (mmagic's data_root + concept_dir) "
                         'and drop concept_dir.')
    if placeholder is not None:
        raise ValueError(f"placeholder is mmagic's key; mmti declares the token once, on the "
                         f'model: set model.placeholder_token={placeholder!r} (the dataset takes '
                         'it from there) and drop placeholder.')
    if template is not None:
        raise ValueError(f"template is mmagic's key; mmti's is templates: set "
                         f'templates={template!r} (a file with one "a photo of a {{}}" per line, '
                         "or a list), or learnable_property='object'/'style' for the built-in "
                         'lists, and drop template.')
    if with_image_reference is not None:
        raise ValueError("with_image_reference is mmagic's key (for ViCo); mmti trains plain "
                         'Textual Inversion: drop it.')


def standard_pipeline(resolution: int, flip_prob: float = 0.5, random_crop: bool = False) -> list[dict]:
    """Resize the shorter side (no stretching), crop a square, maybe flip, pack."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f'resolution must be a whole number of pixels >= 8, got {resolution!r}.')
    if not 0.0 <= float(flip_prob) <= 1.0:
        raise ValueError(f'flip_prob must be between 0 and 1, got {flip_prob!r}.')
    pipeline = [dict(type='ResizeShorterSide', size=resolution),
                dict(type='RandomCrop' if random_crop else 'CenterCrop', size=resolution)]
    if flip_prob > 0:
        pipeline.append(dict(type='RandomHorizontalFlip', prob=float(flip_prob)))
    return pipeline + [dict(type='PackInputs')]


def training_data_fingerprint(image_paths: Sequence, captions: Sequence) -> dict:
    """Short digests of a concept's image files (bytes, in order) and captions."""
    images = hashlib.sha256()
    for path in image_paths:
        images.update(hashlib.sha256(Path(path).read_bytes()).digest())
    text = hashlib.sha256(json.dumps([list(c) for c in captions]).encode())
    return {'images': images.hexdigest()[:16], 'captions': text.hexdigest()[:16]}


@DATASETS.register_module()
class TextualInversionDataset(Dataset):
    """Images of one concept with captions like "a photo of a <cat-toy>".

    Every random choice of a sample (caption template, crop, flip, and the
    seed of its diffusion noise) comes from a generator keyed by
    ``(seed, index)``. Indices past ``len(self)`` are valid and mean later
    epochs (see ``SeededInfiniteSampler``), so a sample is the same whichever
    process, worker or resumed run draws it.

    Args:
        data_root: Folder of concept images (only image files are used).
        placeholder_token: Substituted for ``{}`` in the templates.
        learnable_property: 'object' or 'style' built-in templates.
        templates: Template file or list; overrides ``learnable_property``.
        caption_files: Caption each image from its own templates: the lines
            of ``<image name>.txt`` beside it (e.g. ``photo1.txt`` for
            ``photo1.jpg``), each with ``{}`` for the placeholder, as in
            "a {} on a red sofa". Describing what is *not* the concept
            (setting, pose, lighting) keeps it out of the learned rows.
            Overrides ``templates``.
        repeats: Times each image appears per epoch.
        resolution: Side of the square training images. With it, the
            standard pipeline is built: shorter side resized to
            ``resolution`` (aspect kept), a centre (or random) crop, a
            horizontal flip with ``flip_prob``, packing. Set either this or
            ``pipeline``.
        flip_prob: Chance of a horizontal flip in the standard pipeline; 0
            when captions say left and right.
        random_crop: Random instead of centre crops in the standard pipeline
            (disables the latent cache).
        pipeline: Transforms (configs or callables), instead of ``resolution``.
        seed: Base of the per-sample generators; None takes torch's initial
            seed, which the runner sets from ``randomness.seed``.
        max_aspect_ratio: Images more elongated than this (longer side /
            shorter side) are refused, naming the file.
        concept_dir, placeholder, template, with_image_reference: mmagic's
            keys, refused with a one-line error naming mmti's key
            (see docs/migrating_from_mmagic.md).

    Images are decoded once and kept reduced to the shorter side the pipeline
    needs (see :func:`decode_target`); files that are too large or too
    elongated, or unreadable, stop the dataset with a one-line error naming
    the file (see :mod:`mmti.datasets.image_loading`).
    """

    def __init__(self,
                 data_root: str,
                 placeholder_token: str,
                 learnable_property: str = 'object',
                 templates: str | Sequence[str] | None = None,
                 caption_files: bool = False,
                 repeats: int = 100,
                 resolution: int | None = None,
                 flip_prob: float = 0.5,
                 random_crop: bool = False,
                 pipeline: Sequence = (),
                 seed: int | None = None,
                 max_aspect_ratio: float = MAX_ASPECT_RATIO,
                 concept_dir: str | None = None,
                 placeholder: str | None = None,
                 template: str | None = None,
                 with_image_reference: bool | None = None):
        refuse_mmagic_keys(data_root, concept_dir, placeholder, template, with_image_reference)
        if repeats < 1:
            raise ValueError(f'repeats must be >= 1, got {repeats}.')
        self.data_root = data_root
        self.placeholder_token = placeholder_token
        self.templates = load_templates(learnable_property, templates)
        self.image_paths = list_concept_images(data_root)
        # One template list per image: its own caption file, or the shared one.
        self.caption_files = bool(caption_files)
        self.image_templates = ([read_caption_file(p) for p in self.image_paths]
                                if caption_files else [self.templates] * len(self.image_paths))
        # Kept in checkpoints (metainfo), so --resume can refuse other images or
        # captions: the learning signal's fixed batch, and the steps left, would change.
        self.fingerprint = training_data_fingerprint(self.image_paths, self.image_templates)
        if resolution is not None:
            if pipeline:
                raise ValueError('The dataset has both resolution and pipeline; set one (resolution '
                                 'builds the standard pipeline; set resolution=None to use your own).')
            pipeline = standard_pipeline(resolution, flip_prob, random_crop)
        # Built from our registry so mmti's transforms resolve without a default scope.
        self.pipeline = Compose([TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline])
        # A few images, decoded once (failing now on a bad file) and kept no
        # larger than the pipeline needs: 30 full-size phone photos are 2 GB.
        side, resample, why = decode_target(self.pipeline.transforms)
        decoded = [decode_image(p, side, resample, max_aspect_ratio=max_aspect_ratio)
                   for p in self.image_paths]
        print_log(_decode_summary(data_root, self.image_paths, decoded, side, why),
                  logger='current', level=logging.INFO)
        small = [f'{p.name} ({d.image.width}x{d.image.height})'
                 for p, d in zip(self.image_paths, decoded) if min(d.image.size) < side / 2]
        if small:
            # Trained on, scaled up: blur the concept's details into its rows.
            print_log(f'{data_root}: {len(small)} image(s) under half the training size of {side} '
                      f'px on the shorter side, scaled up: {", ".join(small[:5])}. Larger images '
                      'of the concept teach finer detail.', logger='current',
                      level=logging.WARNING)
        self.images = [d.image for d in decoded]
        # (h, w) of the file for SDXL's size conditioning, where the kept copy is smaller.
        self.original_sizes = [d.original_size[::-1] if d.reduced else None for d in decoded]
        self.repeats = repeats
        self.seed = int(torch.initial_seed() if seed is None else seed) % 2**63
        # Latents can be cached when every transform's output is fixed by the
        # choices it records (crop position, flip); a random crop is not.
        self.latent_cacheable = all(getattr(t, 'cache_safe', False)
                                    for t in self.pipeline.transforms)

    def distinct_captions(self) -> list[str]:
        """Every caption this dataset can produce, each once, in first-seen order.

        Lets the model check before step 1 that each caption holds the
        trainable placeholder and fits the text encoder.
        """
        filled = (fill_template(t, self.placeholder_token)
                  for templates in self.image_templates for t in templates)
        return list(dict.fromkeys(filled))

    @property
    def metainfo(self) -> dict:
        return {'placeholder_token': self.placeholder_token, 'images': len(self.images),
                'data_root': str(self.data_root), 'data_fingerprint': self.fingerprint}

    def __len__(self) -> int:
        return len(self.images) * self.repeats

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            raise IndexError(f'Sample index must be >= 0, got {index}.')
        rng = np.random.default_rng([self.seed, index])
        image_index = index % len(self.images)
        templates = self.image_templates[image_index]
        template = templates[int(rng.integers(len(templates)))]
        results = {
            'img': self.images[image_index],
            'img_path': str(self.image_paths[image_index]),
            'caption': fill_template(template, self.placeholder_token),
            'concept': self.placeholder_token,
            'noise_seed': int(rng.integers(2**63)),
            'sample_idx': index,
            'image_index': image_index,
            'latent_cacheable': self.latent_cacheable,
            'rng': rng,
        }
        if self.original_sizes[image_index] is not None:
            results['original_size'] = self.original_sizes[image_index]
        return self.pipeline(results)
