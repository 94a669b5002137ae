"""The few images of one concept, each paired with a templated caption."""
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.dataset import Compose
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from mmti.registry import DATASETS, TRANSFORMS
from . import transforms  # noqa: F401  (registers the transforms)
from .templates import fill_template, load_templates, read_template_file

IMAGE_EXTENSIONS = frozenset({'.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif', '.tif', '.tiff'})


def list_concept_images(data_root: str | os.PathLike) -> list[Path]:
    """Image files directly under ``data_root`` (by extension), sorted."""
    root = Path(data_root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f'Concept folder {root} is a file, not a folder; set data_root '
                                 'to the folder that holds the images.')
    if not root.is_dir():
        raise FileNotFoundError(
            f'Concept folder {root} does not exist; set data_root to a folder '
            'with 3-5 images of your concept.')
    entries = sorted(p for p in root.iterdir() if not p.name.startswith('.'))
    images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        found = [p.name for p in entries][:20]
        raise ValueError(
            f'Concept folder {root} has no images (looked for '
            f'{", ".join(sorted(IMAGE_EXTENSIONS))}); found: {found or "nothing"}.')
    return images


def load_rgb(path: Path) -> Image.Image:
    """Decode an image upright (EXIF orientation applied) as RGB."""
    try:
        with Image.open(path) as img:
            img.load()
            upright = ImageOps.exif_transpose(img)
            if upright.mode in ('RGBA', 'LA', 'PA') or 'transparency' in upright.info:
                # Transparent pixels hide arbitrary colours; show them as white.
                rgba = upright.convert('RGBA')
                canvas = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(canvas, rgba).convert('RGB')
            return upright.convert('RGB')
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f'Cannot read image {path}: {err}. Re-save it or remove it '
                         'from the concept folder.') from None


def read_caption_file(image_path: Path) -> list[str]:
    """The templates of one image: the lines of ``<image name>.txt`` beside it."""
    path = image_path.with_suffix('.txt')
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
        pipeline: Transforms (configs or callables).
        seed: Base of the per-sample generators; None takes torch's initial
            seed, which the runner sets from ``randomness.seed``.
    """

    def __init__(self,
                 data_root: str,
                 placeholder_token: str,
                 learnable_property: str = 'object',
                 templates: str | Sequence[str] | None = None,
                 caption_files: bool = False,
                 repeats: int = 100,
                 pipeline: Sequence = (),
                 seed: int | None = None):
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
        # 3-5 small images: decode once, and fail now on a bad file.
        self.images = [load_rgb(p) for p in self.image_paths]
        self.repeats = repeats
        # Built from our registry so mmti's transforms resolve without a default scope.
        self.pipeline = Compose([TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline])
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
        return {'placeholder_token': self.placeholder_token, 'images': len(self.images)}

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
            'noise_seed': int(rng.integers(2**63)),
            'sample_idx': index,
            'image_index': image_index,
            'latent_cacheable': self.latent_cacheable,
            'rng': rng,
        }
        return self.pipeline(results)
