"""Images from a base model and embedding files in one call, no config needed.

    from mmti.apis import TextualInversionInferencer
    inferencer = TextualInversionInferencer(
        'data/tiny-sd', embeddings='work_dirs/textual_inversion_tiny/learned_embeds.safetensors')
    images = inferencer('a <cat-toy> bag', seed=0, num_images=2)

Image ``i`` of a prompt starts from the same noise as ``mmti-infer``'s
(``tools/infer.py``) image ``i`` at the same seed, so both give the same
pixels for the same settings.
"""
import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from mmti.cli.infer import DEFAULT_BATCH_SIZE
from mmti.engine import check_pretrained_model, load_user_config
from mmti.models.sampling import initial_latents, noise_seed
from mmti.fileio import save_new_sample
from mmti.registry import MODELS

# A diffusers folder's pipeline class -> the mmti model that loads it.
MODEL_TYPES = {'StableDiffusionXLPipeline': 'TextualInversionXL'}


def default_device() -> str:
    """A CUDA GPU when there is one, else the CPU."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def _sources(embeddings) -> list:
    if embeddings is None:
        return []
    if isinstance(embeddings, (str, os.PathLike, dict)):
        return [embeddings]
    return list(embeddings)


def pipeline_class(folder: str) -> str:
    """The diffusers pipeline a local folder or hub id declares ('' when unknown)."""
    index = Path(folder) / 'model_index.json'
    if index.is_file():
        return json.loads(index.read_text()).get('_class_name', '')
    if Path(folder).exists():
        return ''  # a local folder without an index: the model's own check names it
    from diffusers import DiffusionPipeline
    try:  # a hub id: its model_index.json, from the cache or the hub
        return DiffusionPipeline.load_config(folder).get('_class_name', '')
    except (OSError, ValueError):
        return ''  # loading the model itself says what is wrong


def model_cfg_from_folder(folder: str, sources: list, dtype: str) -> dict:
    """A model config for a diffusers folder whose placeholder is the first embedding's token.

    The model needs one trainable placeholder; it starts from the first
    embedding's rows, so no initializer word is needed.
    """
    from mmti.models.concept_sources import read_concepts
    model_type = MODEL_TYPES.get(pipeline_class(folder), 'TextualInversion')
    if not sources:
        raise ValueError(f'{folder} is a base model; give embeddings= (a learned_embeds file or '
                         'folder) to sample with, or a training config instead of the folder.')
    slots = MODELS.get(model_type).TEXT_SLOTS
    concepts, _ = read_concepts(sources[0], None, slots)
    token, rows = next(iter(concepts.items()))
    return dict(type=model_type, pretrained_model=str(folder), placeholder_token=token,
                num_vectors=int(rows[0].shape[0]) if rows[0].ndim == 2 else 1,
                initial_embedding=sources[0], initial_embedding_token=token, dtype=dtype)


class TextualInversionInferencer:
    """Sample with learned embeddings: base model + embedding file(s) -> PIL images.

    Args:
        model: A diffusers folder (or hub id) of the base model, or an mmti
            config file (``.py``) whose ``model`` names it.
        embeddings: Embedding file(s) or folder(s), any layout mmti reads
            (diffusers, A1111, SDXL ...); their tokens become usable in
            prompts. With a folder ``model`` at least one is needed.
        device: 'cuda', 'cpu', 'cuda:1' ...; None picks a CUDA GPU when
            there is one, else the CPU.
        dtype: Precision of the frozen weights ('fp32', 'fp16', 'bf16');
            None: fp16 on a GPU, fp32 on the CPU (a config's own setting wins).
        cfg_options: Overrides merged into a config (as ``--cfg-options``).
    """

    def __init__(self, model: str | os.PathLike,
                 embeddings: str | os.PathLike | Sequence | None = None,
                 device: str | torch.device | None = None,
                 dtype: str | None = None,
                 cfg_options: dict | None = None):
        self.device = torch.device(device or default_device())
        if self.device.type == 'cuda' and not torch.cuda.is_available():
            raise ValueError(f'device {device} was asked for, but this machine has no usable '
                             'CUDA GPU; pass device="cpu" or leave device=None.')
        dtype = dtype or ('fp16' if self.device.type == 'cuda' else 'fp32')
        sources = _sources(embeddings)
        model = str(model)
        if model.endswith('.py'):
            model_cfg = load_user_config(model, cfg_options, check_model=True).model
        else:
            check_pretrained_model(model, field='model')
            model_cfg = model_cfg_from_folder(model, sources, dtype)
        self.model = MODELS.build(model_cfg).to(self.device)
        self.tokens = self.model.load_embeddings(sources) if sources else []

    @torch.no_grad()
    def __call__(self, prompts: str | Sequence[str], negative_prompt: str | None = None,
                 num_images: int = 1, seed: int = 0, steps: int = 50,
                 guidance_scale: float | None = None, height: int | None = None,
                 width: int | None = None, scheduler: str | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, out_dir: str | os.PathLike | None = None,
                 show_progress: bool = True) -> list[Image.Image]:
        """Sample ``num_images`` images of each prompt.

        Args:
            prompts: One prompt or several, using the loaded tokens
                (``'a <cat-toy> bag'``).
            seed: Image ``i`` of a prompt depends on ``(seed, i)`` only.
            steps, guidance_scale, height, width, scheduler: As ``mmti-infer``;
                None takes the model's defaults.
            batch_size: Images sampled at once.
            out_dir: Also write each image there as
                ``<prompt>_seed<seed>_<i>.png`` (never replacing a file).

        Returns:
            The images, ``num_images`` per prompt, in prompt order.
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if num_images < 1 or batch_size < 1:
            raise ValueError(f'num_images and batch_size must be >= 1, got {num_images} and '
                             f'{batch_size}.')
        native_h, native_w = self.model.native_image_size()
        height, width = height or native_h, width or native_w
        jobs = ((prompt, i) for prompt in prompts for i in range(num_images))
        images = []
        # Chunked and seeded as mmti-infer does, so the same settings give its pixels.
        for start in itertools.count(0, batch_size):
            chunk = list(itertools.islice(jobs, batch_size))
            if not chunk:
                break
            samples = self.model.infer(
                [prompt for prompt, _ in chunk], negative_prompt=negative_prompt,
                num_inference_steps=steps, guidance_scale=guidance_scale, height=height,
                width=width, seed=noise_seed(seed, -1 - start), scheduler=scheduler,
                latents=initial_latents(self.model, seed, [i for _, i in chunk], height, width),
                show_progress=show_progress)['samples']
            images += samples
            if out_dir is not None:
                for (prompt, i), image in zip(chunk, samples):
                    save_new_sample(image, out_dir, prompt, seed, i)
        return images
