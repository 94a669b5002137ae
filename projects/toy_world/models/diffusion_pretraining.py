"""Pretrain the UNet of a toy Stable Diffusion on a frozen VAE and text encoder.

The loss is Stable Diffusion's (and :meth:`TextualInversion.loss`'s): encode
the image, sample its latent, noise it at a random timestep, and regress the
noise. Prompts are encoded exactly as ``TextualInversion.encode_prompt`` does
(CLIP tokenizer padded to ``model_max_length``, last hidden state), so Textual
Inversion later conditions this UNet the way it was trained.
"""
import os
from collections.abc import Sequence
from pathlib import Path

import diffusers
import torch
import torch.nn.functional as F
from diffusers import (AutoencoderKL, DDPMScheduler, StableDiffusionPipeline,
                       UNet2DConditionModel)
from mmengine.model import BaseModel
from transformers import CLIPTextModel, CLIPTokenizer

from mmti.registry import MODELS
from mmti.models.data_preprocessor import TextualInversionDataPreprocessor
from mmti.models.latents import encode_posterior
from mmti.models.sample_noise import SampleNoise
from mmti.models.token_cache import TokenIdCache
from .autoencoder_pretraining import atomic_export

FROZEN = ('vae', 'text_encoder')


def _text_folders(path: str | os.PathLike) -> tuple[str, dict, dict]:
    """Where the text encoder and tokenizer of ``path`` live.

    Accepts a flat folder (CLIPTextModel weights and tokenizer files side by
    side) or one with ``text_encoder/`` and ``tokenizer/`` subfolders (the SD
    layout).
    """
    root = Path(path)
    if (root / 'text_encoder' / 'config.json').is_file():
        return str(root), dict(subfolder='text_encoder'), dict(subfolder='tokenizer')
    if (root / 'config.json').is_file():
        return str(root), {}, {}
    raise FileNotFoundError(
        f'{path} is not a text encoder export: expected config.json (CLIPTextModel) and the '
        'tokenizer files in it, or text_encoder/ and tokenizer/ subfolders.')


@MODELS.register_module()
class DiffusionPretraining(BaseModel):
    """Train ``UNet2DConditionModel(**unet_config)`` as a Stable Diffusion UNet.

    Args:
        vae: Folder of an exported ``AutoencoderKL`` (frozen).
        text_encoder: Folder of an exported ``CLIPTextModel`` and its
            ``CLIPTokenizer``, flat or with ``text_encoder/`` + ``tokenizer/``
            subfolders (frozen).
        unet_config: Keyword arguments of ``UNet2DConditionModel``;
            ``in_channels``/``out_channels`` default to the VAE's latent
            channels, ``cross_attention_dim`` to the text hidden size, and
            ``sample_size`` to ``image_size`` / the VAE's factor.
        scheduler_config: ``DDPMScheduler`` settings of the training noise
            schedule; the exported sampler is built from them.
        image_size: Training image side in pixels (sets the UNet's native
            ``sample_size`` when ``unet_config`` does not).
        inference_scheduler: Class name of the exported sampler,
            'DDIMScheduler' (default) or 'PNDMScheduler'.
        latent_cache: Encode each image variant once (by its ``latent_keys``)
            and reuse the posterior; only when the dataset gives keys.
        data_preprocessor: Defaults to ``TextualInversionDataPreprocessor``.
    """

    FROZEN = FROZEN

    def __init__(self,
                 vae: str,
                 text_encoder: str,
                 unet_config: dict,
                 scheduler_config: dict | None = None,
                 image_size: int | None = None,
                 inference_scheduler: str = 'DDIMScheduler',
                 latent_cache: bool = False,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None):
        super().__init__(
            data_preprocessor=data_preprocessor or dict(type=TextualInversionDataPreprocessor),
            init_cfg=init_cfg)
        self.vae = AutoencoderKL.from_pretrained(vae)
        root, enc_kw, tok_kw = _text_folders(text_encoder)
        self.text_encoder = CLIPTextModel.from_pretrained(root, **enc_kw)
        self.tokenizer = CLIPTokenizer.from_pretrained(root, **tok_kw)
        positions = self.text_encoder.config.max_position_embeddings
        if self.tokenizer.model_max_length > positions:
            raise ValueError(
                f'{text_encoder}: the tokenizer pads to model_max_length='
                f'{self.tokenizer.model_max_length} but the text encoder has {positions} '
                'positions; export the tokenizer with model_max_length 77 (what Stable Diffusion '
                'and Textual Inversion pad to) and a text encoder with >= 77 positions.')
        for name in FROZEN:
            getattr(self, name).requires_grad_(False).eval()

        unet_config = dict(unet_config)
        latent_channels = self.vae.config.latent_channels
        hidden = self.text_encoder.config.hidden_size
        unet_config.setdefault('in_channels', latent_channels)
        unet_config.setdefault('out_channels', latent_channels)
        unet_config.setdefault('cross_attention_dim', hidden)
        if image_size is not None:
            unet_config.setdefault('sample_size', int(image_size) // self.vae_scale_factor)
        if unet_config['in_channels'] != latent_channels or unet_config['out_channels'] != latent_channels:
            raise ValueError(f'unet in/out_channels must equal the VAE latent_channels '
                             f'({latent_channels}); got {unet_config["in_channels"]}/'
                             f'{unet_config["out_channels"]}.')
        if unet_config['cross_attention_dim'] != hidden:
            raise ValueError(f'unet cross_attention_dim must equal the text hidden size ({hidden}); '
                             f'got {unet_config["cross_attention_dim"]}.')
        self.unet = UNet2DConditionModel(**unet_config)
        self.noise_scheduler = DDPMScheduler(**dict(scheduler_config or {}))
        if self.noise_scheduler.config.prediction_type not in ('epsilon', 'v_prediction'):
            raise ValueError('prediction_type must be epsilon or v_prediction.')
        if inference_scheduler not in ('DDIMScheduler', 'PNDMScheduler'):
            raise ValueError("inference_scheduler must be 'DDIMScheduler' or 'PNDMScheduler'.")
        self.inference_scheduler = inference_scheduler
        self.latent_cache = {} if latent_cache else None
        self._token_cache = TokenIdCache()
        # Checkpoints hold the UNet only; the frozen parts come from their folders.
        self.register_state_dict_post_hook(_drop_frozen_state)
        self.register_load_state_dict_post_hook(_ignore_missing_frozen_keys)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    # ------------------------------------------------------------------ text
    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids ``[B, model_max_length]``, as ``TextualInversion.tokenize`` makes them."""
        return self._token_cache(self.tokenizer, prompts)

    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text-encoder hidden states ``[B, max_length, dim]`` the UNet is conditioned on."""
        ids = self.tokenize(list(prompts)).to(self.text_encoder.device)
        return self.text_encoder(ids)[0]

    # -------------------------------------------------------------- training
    @torch.no_grad()
    def encode_posterior(self, images: torch.Tensor,
                         keys: Sequence[str | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_posterior(self.vae, images, keys, self.latent_cache)

    def loss(self, images: torch.Tensor, captions: Sequence[str],
             noise_seeds: Sequence[int] | None = None,
             latent_keys: Sequence[str | None] | None = None) -> dict[str, torch.Tensor]:
        """Stable Diffusion's denoising loss; draws as in ``TextualInversion.loss``."""
        rng = SampleNoise(noise_seeds, images.shape[0], images.device)
        with torch.no_grad():
            mean, std = self.encode_posterior(images, latent_keys)
            latents = mean + std * rng.randn(mean.shape[1:])
            latents = latents.float() * self.vae.config.scaling_factor
        noise = rng.randn(latents.shape[1:])
        timesteps = rng.randint(0, self.noise_scheduler.config.num_train_timesteps)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        prediction = self.unet(noisy, timesteps, self.encode_prompt(captions)).sample
        if self.noise_scheduler.config.prediction_type == 'epsilon':
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        return {'loss': F.mse_loss(prediction.float(), target.float())}

    def forward(self, inputs: torch.Tensor, captions: Sequence[str] | None = None,
                noise_seeds: Sequence[int] | None = None,
                latent_keys: Sequence[str | None] | None = None,
                time_ids: torch.Tensor | None = None, mode: str = 'loss'):
        if mode == 'loss':
            return self.loss(inputs, captions, noise_seeds, latent_keys)
        if mode in ('predict', 'tensor'):
            return self.pipeline()(list(captions), output_type='pil').images
        raise ValueError(f'Unknown mode {mode!r}.')

    def train(self, mode: bool = True) -> 'DiffusionPretraining':
        super().train(mode)
        for name in FROZEN:
            getattr(self, name).eval()
        return self

    # ---------------------------------------------------------------- export
    def build_inference_scheduler(self):
        """The sampler of the export: DDIM/PNDM on the training noise schedule."""
        cls = getattr(diffusers, self.inference_scheduler)
        extra = dict(set_alpha_to_one=False, steps_offset=1)
        if self.inference_scheduler == 'DDIMScheduler':
            extra['clip_sample'] = False  # latents are not bounded to [-1, 1]
        else:
            extra['skip_prk_steps'] = True
        scheduler = cls.from_config(self.noise_scheduler.config, **extra)
        if self.inference_scheduler == 'PNDMScheduler':
            scheduler.register_to_config(clip_sample=False)  # for users who swap in DDIM
        return scheduler

    def pipeline(self) -> StableDiffusionPipeline:
        """A pipeline sharing this model's modules (no copies)."""
        return StableDiffusionPipeline(
            vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
            unet=self.unet, scheduler=self.build_inference_scheduler(),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    def export(self, path: str | os.PathLike) -> Path:
        """Write a complete diffusers Stable Diffusion folder, atomically.

        ``StableDiffusionPipeline.from_pretrained(path)`` loads it, and every
        component loads alone with ``from_pretrained(path, subfolder=...)``
        (what ``TextualInversion`` does).
        """
        return atomic_export(path, lambda tmp: self.pipeline().save_pretrained(tmp))


def _drop_frozen_state(module: DiffusionPretraining, state_dict: dict, prefix: str,
                       local_metadata: dict) -> None:
    for key in list(state_dict):
        if key[len(prefix):].split('.', 1)[0] in module.FROZEN:
            del state_dict[key]


def _ignore_missing_frozen_keys(module: DiffusionPretraining, incompatible_keys) -> None:
    frozen = tuple(f'{name}.' for name in module.FROZEN)
    incompatible_keys.missing_keys[:] = [k for k in incompatible_keys.missing_keys
                                         if not k.startswith(frozen)]
