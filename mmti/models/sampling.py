"""Sampling through diffusers' own pipelines, assembled from a model's modules.

Nothing is re-implemented or copied: the pipeline shares the model's UNet,
VAE and text encoders, and is handed prompt embeddings the model encoded
itself (placeholders expanded, exactly as in training).
"""
import hashlib
import logging
import re
import secrets
from collections.abc import Sequence

import diffusers
import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from mmengine.logging import print_log
from PIL import Image

from mmti.utils import NonFiniteRenderError
from .sample_noise import weights_dtype


def noise_seed(seed: int, index: int) -> int:
    """A 63-bit seed for image ``index`` at ``seed`` (distinct pairs, distinct seeds)."""
    digest = hashlib.sha256(f'mmti-infer:{seed}:{index}'.encode()).digest()
    return int.from_bytes(digest[:8], 'little') >> 1


def initial_latents(model, seed: int, indices: list[int], height: int, width: int) -> torch.Tensor:
    """Starting noise of each image, drawn on the CPU from ``(seed, index)`` alone."""
    factor = model.vae_scale_factor()
    shape = (model.unet.config.in_channels, height // factor, width // factor)
    noise = [torch.randn(shape, generator=torch.Generator().manual_seed(noise_seed(seed, i)))
             for i in indices]
    return torch.stack(noise).to(dtype=next(model.unet.parameters()).dtype)


class DiffusersSamplingMixin:
    """``infer``/``val_step`` for :class:`~mmti.models.TextualInversion`.

    The model class names its pipeline (``PIPELINE``), its default guidance
    (``DEFAULT_GUIDANCE``) and, where they differ from SD's,
    :meth:`pipeline_components` and :meth:`prompt_embeds`.
    """

    def val_step(self, data: dict | None = None) -> list[dict]:
        """Render the validation prompts (or ``data['prompts']``)."""
        prompts = list((data or {}).get('prompts') or self.validation_prompts)
        if not prompts:
            return []
        samples = self.infer(prompts, **self.validation_cfg)['samples']
        per_prompt = len(samples) // len(prompts)
        return [{'prompt': prompts[i // per_prompt], 'sample': s} for i, s in enumerate(samples)]

    def val_step_groups(self, prompt_groups: Sequence[Sequence[str]]) -> list[list[dict]]:
        """:meth:`val_step` of several prompt lists, rendered in one batch.

        Each group starts from the noise :meth:`val_step` draws for that
        group alone, so its images do not depend on the groups beside it
        (up to floating-point differences of the larger batch; a sampler that
        adds noise at every step, such as an ancestral one, draws that noise
        for the whole batch). One call of a larger batch costs far less than
        one call per group: a many-concept run renders the grids of the
        concepts that finish at the same step this way.
        """
        groups = [list(g) for g in prompt_groups]
        if not any(groups):
            return [[] for _ in groups]
        cfg = dict(self.validation_cfg)
        seed = cfg.pop('seed', None)
        seed = secrets.randbits(63) if seed is None else int(seed)
        native_h, native_w = self.native_image_size()
        height, width = cfg.pop('height', None) or native_h, cfg.pop('width', None) or native_w
        per_prompt = int(cfg.get('num_images_per_prompt', 1))
        latents = torch.cat([self.starting_noise(len(g) * per_prompt, seed, height, width)
                             for g in groups if g])
        samples = self.infer([p for g in groups for p in g], seed=seed, height=height,
                             width=width, latents=latents, **cfg)['samples']
        results, start = [], 0
        for group in groups:
            images = samples[start:start + len(group) * per_prompt]
            start += len(images)
            results.append([{'prompt': group[i // per_prompt], 'sample': s}
                            for i, s in enumerate(images)])
        return results

    def starting_noise(self, num_images: int, seed: int, height: int, width: int) -> torch.Tensor:
        """The latents :meth:`infer` starts ``num_images`` images from with
        ``seed``: what the diffusers pipeline draws from its generator."""
        factor = self.vae_scale_factor()
        shape = (num_images, self.unet.config.in_channels, height // factor, width // factor)
        generator = torch.Generator(device=self.unet.device).manual_seed(seed)
        return randn_tensor(shape, generator=generator, device=self.unet.device,
                            dtype=weights_dtype(self.text_encoder))

    def test_step(self, data: dict | None = None) -> list[dict]:
        """As :meth:`val_step`; an evaluation request (``concept_evaluation``,
        from mmti.evaluation's ConceptEvaluationPrompts) passes through
        unrendered: its metric renders the protocol's prompts itself."""
        if isinstance(data, dict) and 'concept_evaluation' in data:
            return [{'concept_evaluation': request} for request in data['concept_evaluation']]
        return self.val_step(data)

    @torch.no_grad()
    def infer(self,
              prompt: str | Sequence[str],
              negative_prompt: str | Sequence[str] | None = None,
              num_inference_steps: int = 50,
              guidance_scale: float | None = None,
              height: int | None = None,
              width: int | None = None,
              num_images_per_prompt: int = 1,
              seed: int | None = None,
              scheduler: str | dict | None = None,
              show_progress: bool = True,
              **pipeline_kwargs) -> dict[str, list[Image.Image]]:
        """Sample images with a diffusers pipeline made of this model's modules.

        The pipeline shares (does not copy) the UNet, VAE and text encoders;
        prompts are encoded by this model, exactly as in training.
        Randomness comes from a local generator seeded with ``seed``: the
        global RNG is neither read nor reseeded.

        Args:
            guidance_scale: Classifier-free guidance; None: 7.5 (SD), 5.0 (SDXL).
            Others: as diffusers' pipelines.

        Returns:
            dict: ``{'samples': [PIL.Image, ...]}``, ``num_images_per_prompt``
            images per prompt, in prompt order.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = negative_prompt if negative_prompt is not None else ''
        negatives = [negatives] * len(prompts) if isinstance(negatives, str) else list(negatives)
        if len(negatives) != len(prompts):
            raise ValueError(f'Got {len(prompts)} prompts but {len(negatives)} negative prompts.')
        self._warn_long_prompts(prompts + negatives)
        self._warn_unknown_placeholders(prompts + negatives)
        # diffusers resets *both* sides when either is None; fill each alone.
        native_h, native_w = self.native_image_size()
        height, width = height or native_h, width or native_w
        was_training = self.training
        self.eval()
        try:
            pipeline = self.PIPELINE(**self.pipeline_components(),
                                     scheduler=self.build_inference_scheduler(scheduler))
            pipeline.set_progress_bar_config(disable=not show_progress)
            generator = torch.Generator(device=self.unet.device).manual_seed(
                secrets.randbits(63) if seed is None else int(seed))
            # As arrays first: the pipeline's own conversion turns NaN into black
            # pixels without a word; these are the same bytes when finite.
            pixels = pipeline(
                **self.prompt_embeds(prompts, negatives),
                num_inference_steps=num_inference_steps,
                guidance_scale=self.DEFAULT_GUIDANCE if guidance_scale is None else guidance_scale,
                height=height, width=width, num_images_per_prompt=num_images_per_prompt,
                generator=generator, output_type='np', **pipeline_kwargs).images
        finally:
            self.train(was_training)
        if not np.isfinite(pixels).all():
            raise NonFiniteRenderError(
                f'The renders of {prompts[0]!r} hold NaN or inf: the model computes non-finite '
                'values with these embedding rows (a diverged embedding?); no image was made. '
                'Use rows from earlier in training, or train again with a lower learning rate.')
        return {'samples': pipeline.numpy_to_pil(pixels)}

    def pipeline_components(self) -> dict:
        """This model's own modules, as the diffusers pipeline names them."""
        return dict(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                    unet=self.unet, safety_checker=None, feature_extractor=None,
                    requires_safety_checker=False)

    def prompt_embeds(self, prompts: list[str], negatives: list[str]) -> dict[str, torch.Tensor]:
        """The pipeline's prompt inputs, encoded by this model (placeholders expanded)."""
        return dict(prompt_embeds=self.encode_prompt(prompts),
                    negative_prompt_embeds=self.encode_prompt(negatives))

    def _warn_long_prompts(self, prompts: Sequence[str]) -> None:
        limit = self.tokenizer.model_max_length
        for prompt in dict.fromkeys(prompts):
            length = self.vocabulary.prompt_length(prompt)
            if length > limit:
                print_log(f'Prompt {prompt!r} is {length} tokens (placeholders expanded); the text '
                          f'encoder reads {limit}, so the end is cut.', logger='current',
                          level=logging.WARNING)

    def _warn_unknown_placeholders(self, prompts: Sequence[str]) -> None:
        # '<my-mug>' that no file loaded is read as ordinary text: '<', 'my',
        # '-', 'mug', '>'. The image comes out, without the concept. What
        # the loaded names match (the A1111 name 'my-mug' inside '<my-mug>')
        # is taken out first.
        for prompt in dict.fromkeys(prompts):
            rest = self.expand_prompt.without_names(prompt)
            unknown = list(dict.fromkeys(re.findall(r'<[^<>\s]+>', rest)))
            if unknown:
                print_log(f'Prompt {prompt!r} names {", ".join(unknown)}, which no loaded embedding '
                          f'has (loaded: {", ".join(self.concepts) or "none"}); it is read as '
                          'ordinary words. Load its file first (--embeddings, load_embeddings).',
                          logger='current', level=logging.WARNING)

    def native_image_size(self) -> tuple[int, int]:
        """(height, width) the UNet was built for, in pixels."""
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else size
        factor = self.vae_scale_factor()
        return h * factor, w * factor

    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along a side (the pipeline's ``vae_scale_factor``)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def _check_scheduler(self, cfg: str | dict | None) -> dict:
        if cfg is None:
            cfg = dict(type=self.noise_scheduler.load_config(
                self.pretrained_model, subfolder='scheduler')['_class_name'])
        elif isinstance(cfg, str):
            cfg = dict(type=cfg)
        else:
            cfg = dict(cfg)
        name = cfg.get('type')
        allowed = sorted({c.__name__ for c in self.noise_scheduler.compatibles}
                         | {type(self.noise_scheduler).__name__})
        if name not in allowed:
            raise ValueError(
                f'Unknown scheduler {name!r} for this model; use one of: {", ".join(allowed)}.')
        return cfg

    def build_inference_scheduler(self, cfg: str | dict | None = None):
        """A fresh sampler configured from the training noise schedule."""
        cfg = self.inference_scheduler_cfg if cfg is None else self._check_scheduler(cfg)
        cfg = dict(cfg)
        cls = getattr(diffusers, cfg.pop('type'))
        return cls.from_config(self.noise_scheduler.config, **cfg)

