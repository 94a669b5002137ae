"""Textual Inversion (Gal et al. 2022, arXiv 2208.01618) on Stable Diffusion.

The whole algorithm is :meth:`TextualInversion.loss`: encode the images to
latents, noise them at a random timestep, condition the frozen UNet on a
caption that contains the placeholder, and regress the noise (or velocity).
Only the placeholder rows of the token table receive gradients.
"""
import secrets
from collections.abc import Sequence

import diffusers
import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline
from mmengine.model import BaseModel
from PIL import Image

from mmti.fileio import describe_dim, read_embedding_file, write_embedding_file
from mmti.registry import MODELS
from .data_preprocessor import TextualInversionDataPreprocessor
from .placeholder_embedding import PlaceholderEmbedding
from .placeholder_tokens import (PromptExpander, add_placeholder_tokens, remove_added_tokens,
                                 single_token_id, vector_token_names)
from .pretrained import build_component, torch_dtype
from .token_cache import TokenIdCache

FROZEN_MODULES = ('unet', 'vae', 'text_encoder')


@MODELS.register_module()
class TextualInversion(BaseModel):
    """Learn a new word for a frozen Stable Diffusion model.

    Args:
        pretrained_model (str): Hub id or local diffusers folder that every
            component is loaded from unless its own config says otherwise.
        placeholder_token (str): The new word, e.g. ``'<cat-toy>'``.
        initializer_token (str): One existing token whose embedding starts
            every placeholder row, e.g. ``'toy'``.
        num_vectors (int): Rows (tokens) the concept gets. Defaults to 1.
        initial_embedding (str | None): An embedding file (any supported
            layout) to start the rows from instead of ``initializer_token``:
            continue an earlier run, or start from another concept.
        initial_embedding_token (str | None): Which concept of that file,
            when it holds several.
        tokenizer, text_encoder, vae, unet, noise_scheduler (dict | None):
            Component configs; ``from_pretrained`` of ``pretrained_model``
            with the standard subfolder when omitted.
        inference_scheduler (str | dict | None): Sampler for :meth:`infer`,
            a diffusers scheduler class name or ``dict(type=name, **kwargs)``;
            None uses the one the pretrained folder names.
        dtype (str): Precision of the frozen weights, 'fp32', 'fp16' or
            'bf16'. Trainable rows and the loss stay fp32.
        latent_cache (bool): Encode each distinct training image variant
            (image, crop, flip) with the VAE once and reuse its latent
            distribution; used when the dataset marks its samples cacheable
            (no random crop). Same distribution, no repeated VAE work.
        gradient_checkpointing (bool): Recompute UNet activations in the
            backward pass: less memory, about a third more compute.
        compile_unet (bool | str): ``torch.compile`` the UNet (first steps
            slow); a string names the backend. Inductor is refused on CPU: with
            torch 2.13 it gave this UNet wrong gradients w.r.t. the text
            states (58% off; eager and aot_eager are exact), see
            tests/test_models/test_speed_switches.py.
        validation_prompts (Sequence[str]): Rendered by :meth:`val_step`.
        validation_cfg (dict | None): Keyword arguments of :meth:`infer` for
            validation renders (seed, steps, size ...).
        data_preprocessor (dict | None): Defaults to
            ``TextualInversionDataPreprocessor``.
    """

    FROZEN = FROZEN_MODULES  # pretrained parts: never trained, never checkpointed

    def __init__(self,
                 pretrained_model: str,
                 placeholder_token: str,
                 initializer_token: str | None = None,
                 num_vectors: int = 1,
                 initial_embedding: str | None = None,
                 initial_embedding_token: str | None = None,
                 tokenizer: dict | None = None,
                 text_encoder: dict | None = None,
                 vae: dict | None = None,
                 unet: dict | None = None,
                 noise_scheduler: dict | None = None,
                 inference_scheduler: str | dict | None = None,
                 dtype: str = 'fp32',
                 latent_cache: bool = True,
                 gradient_checkpointing: bool = False,
                 compile_unet: bool | str = False,
                 validation_prompts: Sequence[str] = (),
                 validation_cfg: dict | None = None,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None):
        super().__init__(
            data_preprocessor=data_preprocessor or dict(type=TextualInversionDataPreprocessor),
            init_cfg=init_cfg)
        vector_token_names(placeholder_token, num_vectors)  # validates num_vectors early
        self.pretrained_model = pretrained_model
        weights_dtype = torch_dtype(dtype)
        self.tokenizer = build_component(
            tokenizer or dict(type='CLIPTokenizer'), pretrained_model, subfolder='tokenizer')
        self.text_encoder = build_component(
            text_encoder or dict(type='CLIPTextModel'), pretrained_model,
            subfolder='text_encoder', torch_dtype=weights_dtype)
        self.vae = build_component(
            vae or dict(type='AutoencoderKL'), pretrained_model, subfolder='vae',
            torch_dtype=weights_dtype)
        self.unet = build_component(
            unet or dict(type='UNet2DConditionModel'), pretrained_model, subfolder='unet',
            torch_dtype=weights_dtype)
        self.noise_scheduler = build_component(
            noise_scheduler or dict(type='DDPMScheduler'), pretrained_model, subfolder='scheduler')
        self.inference_scheduler_cfg = self._check_scheduler(inference_scheduler)
        for name in FROZEN_MODULES:
            getattr(self, name).requires_grad_(False)  # eval mode: _set_modes below
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        if compile_unet:
            self._compile_unet('inductor' if compile_unet is True else compile_unet)
        self.latent_cache = {} if latent_cache else None
        self._token_cache = TokenIdCache()

        # The placeholder rows live beside the frozen table, not inside it.
        self.token_embedding = PlaceholderEmbedding(
            self.text_encoder.get_input_embeddings(), first_new_id=len(self.tokenizer))
        self.text_encoder.set_input_embeddings(self.token_embedding)
        self._build_more_text_encoders(weights_dtype)
        self.expand_prompt = PromptExpander()
        self.placeholder_token = placeholder_token
        if initial_embedding is not None:
            init_rows = self._initial_rows(initial_embedding, initial_embedding_token, num_vectors)
        elif initializer_token is not None:
            init_rows = self._initial_word_rows(initializer_token, num_vectors)
        else:
            raise ValueError('Set initializer_token (one word such as "toy") or initial_embedding '
                             '(an embedding file to start from).')
        self._add_concept(placeholder_token, init_rows, trainable=True)

        self.validation_prompts = list(validation_prompts)
        self.validation_cfg = dict(validation_cfg or {})
        # Checkpoints hold only what training changes (see _trainable_state).
        self.register_state_dict_post_hook(_keep_trainable_state)
        self.register_load_state_dict_post_hook(_ignore_missing_frozen_keys)
        # Every module's mode, the placeholder tables inside the frozen
        # encoders included, is set once here; train() then only acts on change.
        self._set_modes(self.training)

    def _build_more_text_encoders(self, weights_dtype: torch.dtype) -> None:
        """Models with a second text encoder (SDXL) build it here, frozen, with
        its own placeholder table: after the first, before any concept is added."""

    def _compile_unet(self, backend: str) -> None:
        if backend == 'inductor' and self.unet.device.type == 'cpu' and not torch.cuda.is_available():
            raise ValueError(
                'compile_unet with the inductor backend is refused on CPU: it computed wrong '
                'gradients for the placeholder rows in our tests (torch 2.13). Use it on a GPU, '
                "or compile_unet='aot_eager' to check compilation on CPU.")
        self.unet.compile(backend=backend)  # in place: the module and its state dict keep their names

    # ------------------------------------------------------------------ tokens
    @property
    def concepts(self) -> list[str]:
        """Placeholder tokens this model knows, trained or loaded."""
        return list(self.token_embedding.concepts)

    def _add_concept(self, token: str, rows: torch.Tensor, trainable: bool) -> None:
        names = vector_token_names(token, rows.shape[0])
        if rows.shape[1] != self.token_embedding.embedding_dim:
            raise ValueError(
                f'Embedding for {token!r} has dimension {rows.shape[1]}, but this text '
                f'encoder uses {self.token_embedding.embedding_dim} (768: SD 1.x, '
                '1024: SD 2.x, 768+1280: SDXL). Use an embedding made for this base model.')
        self._token_cache.clear()  # ids of prompts may change
        ids = add_placeholder_tokens(self.tokenizer, names)
        if ids[0] != self.token_embedding.num_embeddings:
            remove_added_tokens(self.tokenizer, names)
            raise RuntimeError('Tokenizer and placeholder table are out of step.')
        self.token_embedding.add_concept(token, rows, trainable=trainable)
        self.expand_prompt.add(token, names)

    def _initial_word_rows(self, initializer_token: str, num_vectors: int) -> torch.Tensor:
        init_id = single_token_id(self.tokenizer, initializer_token)
        return self.token_embedding.base.weight[init_id].detach().repeat(num_vectors, 1)

    def _initial_rows(self, path: str, token: str | None, num_vectors: int) -> torch.Tensor:
        embeddings = self._read_source(path, None)
        if token is None:
            token = (self.placeholder_token if self.placeholder_token in embeddings
                     else next(iter(embeddings)) if len(embeddings) == 1 else None)
        if token not in embeddings:
            raise ValueError(f'initial_embedding {path} holds {list(embeddings)}; set '
                             'initial_embedding_token to the one to start from.')
        rows = embeddings[token]
        found = (rows[0] if isinstance(rows, tuple) else rows).shape[0]
        if found != num_vectors:
            raise ValueError(f'initial_embedding {path} has {found} vector(s) for '
                             f'{token!r} but num_vectors={num_vectors}; set '
                             f'num_vectors={found}.')
        return rows

    def tokenize(self, prompts: Sequence[str], tokenizer=None) -> torch.Tensor:
        """Token ids ``[B, max_length]`` with placeholders expanded.

        Training captions come from a few dozen templates, so each distinct
        prompt is tokenised once per tokenizer and remembered (until concepts
        change).
        """
        return self._token_cache(tokenizer or self.tokenizer, prompts, self.expand_prompt)

    def check_training_captions(self, captions: Sequence[str],
                                source: str = 'train_dataloader.dataset') -> None:
        """Refuse, before step 1, captions that cannot train every trainable row.

        Each caption must contain every trainable placeholder id (otherwise
        those rows get no gradient and the run silently saves its
        initialisation) and, placeholders expanded, fit the text encoder
        (otherwise the last vectors and the end-of-text token are cut).

        Args:
            captions: Every distinct caption the dataset produces.
            source: Config field the captions come from, for the message.
        """
        trainable = self.trainable_token_ids()
        limit = self.tokenizer.model_max_length
        longest, longest_caption = 0, ''
        for caption in captions:
            ids = self.tokenizer(self.expand_prompt(caption), truncation=False)['input_ids']
            missing = [t for t in trainable if t not in ids]
            if missing:
                tokens = self.tokenizer.convert_ids_to_tokens(missing)
                raise ValueError(
                    f'{source} caption {caption!r} does not contain the trainable placeholder '
                    f'{tokens[0]!r} (model.placeholder_token={self.placeholder_token!r}); those '
                    'rows would never be trained. Declare the token once, at the top of the '
                    'config (placeholder_token = ...), so model and dataset use the same one.')
            if len(ids) > longest:
                longest, longest_caption = len(ids), caption
        if longest > limit:
            raise ValueError(
                f'{source} caption {longest_caption!r} is {longest} tokens with the placeholder '
                f'expanded to {len(trainable)} vectors, but the text encoder reads {limit}; the '
                'end would be cut. Lower model.num_vectors or shorten the templates.')

    def trainable_token_ids(self) -> list[int]:
        """Tokenizer ids of every trainable placeholder row."""
        return [i for name in self.token_embedding.trainable_concepts()
                for i in self.token_embedding.concept_id_range(name)]

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text-encoder hidden states ``[B, max_length, dim]`` for the UNet."""
        ids = self.tokenize(prompts).to(self.token_embedding.base.weight.device)
        return self.text_encoder(ids)[0]

    # --------------------------------------------------------------- training
    def loss(self, images: torch.Tensor, captions: Sequence[str],
             noise_seeds: Sequence[int] | None = None,
             latent_keys: Sequence[str | None] | None = None,
             time_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The denoising loss of Textual Inversion for one batch.

        Args:
            images: ``[B, 3, H, W]`` in [-1, 1].
            captions: One caption per image, containing the placeholder.
            noise_seeds: One seed per sample for its latent sample, timestep
                and noise; the result then does not depend on batch layout,
                process count or resume point. None draws from torch's RNG.
            latent_keys: One key per image naming its variant (image, crop,
                flip), from a cacheable dataset; enables the latent cache.
            time_ids: ``[B, 6]`` original size, crop corner and target size
                per image (SDXL's micro-conditioning; unused by SD 1.x/2.x).
        """
        rng = _SampleNoise(noise_seeds, images.shape[0], images.device)
        with torch.no_grad():
            mean, std = self.encode_posterior(images, latent_keys)
            latents = mean + std * rng.randn(mean.shape[1:])
            latents = latents.to(torch.promote_types(latents.dtype, torch.float32))
            latents = latents * self.vae.config.scaling_factor
        noise = rng.randn(latents.shape[1:])
        timesteps = rng.randint(self.noise_scheduler.config.num_train_timesteps)
        noisy_latents = self.noise_scheduler.add_noise(latents, noise, timesteps)

        text_states, unet_kwargs = self.condition(captions, time_ids)
        unet_dtype = _weights_dtype(self.unet)
        prediction = self.unet(noisy_latents.to(unet_dtype), timesteps,
                               text_states.to(unet_dtype), **unet_kwargs).sample

        prediction_type = self.noise_scheduler.config.prediction_type
        if prediction_type == 'epsilon':
            target = noise
        elif prediction_type == 'v_prediction':
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            raise ValueError(f'Unsupported prediction_type {prediction_type!r}.')
        # At least fp32 however the frozen weights are stored (fp64 stays fp64).
        loss_dtype = torch.promote_types(prediction.dtype, torch.float32)
        return {'loss': F.mse_loss(prediction.to(loss_dtype), target.to(loss_dtype))}

    def condition(self, captions: Sequence[str],
                  time_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """What the UNet is conditioned on: text states and extra UNet kwargs."""
        return self.encode_prompt(captions), {}

    def encode_posterior(self, images: torch.Tensor,
                         keys: Sequence[str | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the VAE's latent distribution for each image.

        With the latent cache on and keys given, each variant is encoded once,
        on its own (so its value never depends on which batch it first came
        in, which keeps resumed runs bitwise identical), then reused.
        """
        if self.latent_cache is None or keys is None or any(k is None for k in keys):
            posterior = self.vae.encode(images.to(_weights_dtype(self.vae))).latent_dist
            return posterior.mean, posterior.std
        for i, key in enumerate(keys):
            if key not in self.latent_cache:
                posterior = self.vae.encode(images[i:i + 1].to(_weights_dtype(self.vae))).latent_dist
                self.latent_cache[key] = (posterior.mean[0], posterior.std[0])
        cached = [self.latent_cache[k] for k in keys]
        return torch.stack([m for m, _ in cached]), torch.stack([s for _, s in cached])

    def forward(self, inputs: torch.Tensor, captions: Sequence[str] | None = None,
                noise_seeds: Sequence[int] | None = None,
                latent_keys: Sequence[str | None] | None = None,
                time_ids: torch.Tensor | None = None, mode: str = 'loss'):
        if mode == 'loss':
            return self.loss(inputs, captions, noise_seeds, latent_keys, time_ids)
        if mode in ('predict', 'tensor'):
            return self.infer(list(captions))
        raise ValueError(f'Unknown mode {mode!r}.')

    def train(self, mode: bool = True) -> 'TextualInversion':
        # mmengine's loop calls train() before every step, and a full walk of
        # SD's ~1100 modules cost 2-5 ms of a 28 ms tiny-model CPU step.
        # Nothing to do when the mode already holds and the frozen parts are
        # still in eval; anything that changed a mode goes the full way.
        if mode == self.training and not any(m.training for m in self._frozen_modules()):
            return self
        return self._set_modes(mode)

    def _set_modes(self, mode: bool) -> 'TextualInversion':
        super().train(mode)
        # Frozen parts always run as at inference (no dropout), so training
        # sees the same network users will sample from.
        for module in self._frozen_modules():
            module.eval()
        return self

    def _frozen_modules(self) -> list[torch.nn.Module]:
        return [getattr(self, name) for name in self.FROZEN if name in self._modules]

    # ---------------------------------------------------------------- sampling
    def val_step(self, data: dict | None = None) -> list[dict]:
        """Render the validation prompts (or ``data['prompts']``)."""
        prompts = list((data or {}).get('prompts') or self.validation_prompts)
        if not prompts:
            return []
        samples = self.infer(prompts, **self.validation_cfg)['samples']
        per_prompt = len(samples) // len(prompts)
        return [{'prompt': prompts[i // per_prompt], 'sample': s} for i, s in enumerate(samples)]

    def test_step(self, data: dict | None = None) -> list[dict]:
        return self.val_step(data)

    @torch.no_grad()
    def infer(self,
              prompt: str | Sequence[str],
              negative_prompt: str | Sequence[str] | None = None,
              num_inference_steps: int = 50,
              guidance_scale: float = 7.5,
              height: int | None = None,
              width: int | None = None,
              num_images_per_prompt: int = 1,
              seed: int | None = None,
              scheduler: str | dict | None = None,
              show_progress: bool = True,
              **pipeline_kwargs) -> dict[str, list[Image.Image]]:
        """Sample images with a diffusers pipeline made of this model's modules.

        The pipeline shares (does not copy) the UNet, VAE and text encoder;
        prompts are encoded by :meth:`encode_prompt`, exactly as in training.
        Randomness comes from a local generator seeded with ``seed``: the
        global RNG is neither read nor reseeded.

        Returns:
            dict: ``{'samples': [PIL.Image, ...]}``, ``num_images_per_prompt``
            images per prompt, in prompt order.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = negative_prompt if negative_prompt is not None else ''
        negatives = [negatives] * len(prompts) if isinstance(negatives, str) else list(negatives)
        if len(negatives) != len(prompts):
            raise ValueError(f'Got {len(prompts)} prompts but {len(negatives)} negative prompts.')
        # diffusers resets *both* sides when either is None; fill each alone.
        native_h, native_w = self.native_image_size()
        height, width = height or native_h, width or native_w
        was_training = self.training
        self.eval()
        try:
            pipeline = StableDiffusionPipeline(
                vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                unet=self.unet, scheduler=self.build_inference_scheduler(scheduler),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)
            pipeline.set_progress_bar_config(disable=not show_progress)
            device = self.unet.device
            generator = torch.Generator(device=device).manual_seed(
                secrets.randbits(63) if seed is None else int(seed))
            images = pipeline(
                prompt_embeds=self.encode_prompt(prompts),
                negative_prompt_embeds=self.encode_prompt(negatives),
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale, height=height, width=width,
                num_images_per_prompt=num_images_per_prompt,
                generator=generator, output_type='pil', **pipeline_kwargs).images
        finally:
            self.train(was_training)
        return {'samples': images}

    def native_image_size(self) -> tuple[int, int]:
        """(height, width) the UNet was built for, in pixels."""
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else size
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return h * factor, w * factor

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

    # ------------------------------------------------------------- embeddings
    def get_embeddings(self, tokens: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """``{token: rows[n, dim]}`` (fp32 copies) for the given concepts."""
        tokens = self.concepts if tokens is None else list(tokens)
        unknown = [t for t in tokens if t not in self.concepts]
        if unknown:
            raise KeyError(f'No embedding for {unknown}; this model has {self.concepts}.')
        return {t: self.token_embedding.concept_rows(t).detach().float().cpu().clone() for t in tokens}

    def save_embeddings(self, path: str, tokens: Sequence[str] | None = None,
                        step: int | None = None, format: str = 'diffusers') -> str:
        """Write learned rows to a file other tools load.

        Args:
            path: Output file; written atomically.
            tokens: Concepts to save; defaults to the trained placeholder.
            step: Training step, recorded in the file.
            format: 'diffusers' (``{"<tok>": tensor[n, dim]}``, the default),
                'a1111' (``.pt``) or 'safetensors' (``{"emb_params": ...}``).
        """
        embeddings = self.get_embeddings([self.placeholder_token] if tokens is None else tokens)
        return str(write_embedding_file(path, embeddings, format, step=step,
                                        metadata={'base_model': str(self.pretrained_model)}))

    def load_embeddings(self, source, token: str | None = None,
                        replace: bool = False) -> list[str]:
        """Load embeddings from files, folders or dicts; returns the tokens loaded.

        Any layout of :mod:`mmti.fileio.embedding_file` is accepted (detected
        by content). Rows for a token this model already owns (e.g. the
        config's own placeholder) replace its rows when the shapes match; a
        new token is added, frozen. A token loaded earlier is refused unless
        ``replace=True``; a base-vocabulary word is always refused.

        Args:
            source: A file, a folder with ``learned_embeds.*``, a
                ``{token: tensor}`` dict, or a list of these.
            token: Name for a single-concept source (overrides the file's).
            replace: Allow replacing rows loaded earlier.
        """
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        if token is not None and len(sources) != 1:
            raise ValueError('`token` renames a single source; give one file or dict.')
        loaded = []
        for item in sources:
            for name, rows in self._read_source(item, token).items():
                if name in self.concepts:
                    self._replace_rows(name, rows, replace or name == self.placeholder_token)
                else:
                    self._add_concept(name, rows, trainable=False)
                loaded.append(name)
        return loaded

    def _read_source(self, item, token: str | None) -> dict[str, torch.Tensor]:
        if isinstance(item, dict):
            embeddings = {str(k): v[None] if v.ndim == 1 else v for k, v in item.items()}
            if token is not None:
                if len(embeddings) != 1:
                    raise ValueError(f'`token={token!r}` needs one concept; got {list(embeddings)}.')
                embeddings = {token: next(iter(embeddings.values()))}
            origin = 'the given dict'
        else:
            contents = read_embedding_file(item, token=token)
            if contents.embeddings_2:
                raise ValueError(
                    f'{item} is an SDXL embedding (clip_l {describe_dim(768)} + clip_g '
                    f'{describe_dim(1280)}); this model has one text encoder of dimension '
                    f'{describe_dim(self.token_embedding.embedding_dim)}. Use it with an SDXL model.')
            embeddings, origin = contents.embeddings, str(item)
        dim = self.token_embedding.embedding_dim
        for name, rows in embeddings.items():
            if rows.ndim != 2 or rows.shape[1] != dim:
                found = describe_dim(rows.shape[-1]) if rows.ndim else str(tuple(rows.shape))
                raise ValueError(
                    f'Embedding {name!r} from {origin} has shape {tuple(rows.shape)}: dimension '
                    f'{found}, but this text encoder uses dimension {describe_dim(dim)}; it was '
                    'made for another base model.')
        return embeddings

    def unload_embeddings(self, tokens: Sequence[str] | None = None) -> list[str]:
        """Remove concepts; with no argument, every one (the trained one too).

        The tokenizer and the token table return to exactly their earlier
        size and values: ids of the remaining concepts close up, as if the
        removed ones had never been added.
        """
        tokens = self.concepts if tokens is None else list(tokens)
        unknown = [t for t in tokens if t not in self.concepts]
        if unknown:
            raise ValueError(f'Cannot unload {unknown}: not loaded (loaded: {self.concepts}).')
        self._token_cache.clear()
        for name in tokens:
            names = vector_token_names(name, self.token_embedding.concept_rows(name).shape[0])
            for tokenizer, table in self._encoders():
                remove_added_tokens(tokenizer, names)
                table.remove_concept(name)
            self.expand_prompt.remove(name, names)
        return tokens

    def _encoders(self) -> list:
        """(tokenizer, placeholder table) of every text encoder."""
        return [(self.tokenizer, self.token_embedding)]

    def _replace_rows(self, name: str, rows: torch.Tensor, allowed: bool) -> None:
        if not allowed:
            raise ValueError(f'Token {name!r} is already loaded; pass replace=True to overwrite it.')
        current = self.token_embedding.concept_rows(name)
        if current.shape != rows.shape:
            raise ValueError(
                f'{name!r} has {current.shape[0]} vector(s) in this model but '
                f'{rows.shape[0]} in the file; set num_vectors={rows.shape[0]} in the config.')
        with torch.no_grad():
            current.copy_(rows.to(current))


def _weights_dtype(module: torch.nn.Module) -> torch.dtype:
    # diffusers' ``.dtype`` walks every submodule (~1 ms on SD); the first
    # parameter says the same for these uniformly cast models.
    return next(module.parameters()).dtype


class _SampleNoise:
    """Per-sample random draws (one generator each) or torch's global RNG."""

    def __init__(self, seeds: Sequence[int] | None, batch_size: int, device: torch.device):
        self.device = device
        self.batch_size = batch_size
        self.generators = None
        if seeds is not None:
            if len(seeds) != batch_size:
                raise ValueError(f'{len(seeds)} noise seeds for a batch of {batch_size}.')
            self.generators = [torch.Generator(device=device).manual_seed(int(s) % 2**63)
                               for s in seeds]

    def randn(self, shape: torch.Size) -> torch.Tensor:
        if self.generators is None:
            return torch.randn((self.batch_size, *shape), device=self.device)
        return torch.stack([torch.randn(shape, generator=g, device=self.device)
                            for g in self.generators])

    def randint(self, high: int) -> torch.Tensor:
        if self.generators is None:
            return torch.randint(0, high, (self.batch_size,), device=self.device)
        return torch.cat([torch.randint(0, high, (1,), generator=g, device=self.device)
                          for g in self.generators])


def _keep_trainable_state(module: TextualInversion, state_dict: dict, prefix: str,
                          local_metadata: dict) -> None:
    """Drop frozen pretrained weights from the state dict, in place.

    They are reloaded from ``pretrained_model``; a checkpoint then holds the
    concept rows only (KB instead of GB).
    """
    for key in list(state_dict):
        head, _, rest = key[len(prefix):].partition('.')
        if head.startswith('token_embedding') and rest.startswith('rows.'):
            continue  # the learned (and loaded) concept rows
        if head in module.FROZEN or head.startswith('token_embedding'):
            del state_dict[key]


def _ignore_missing_frozen_keys(module: TextualInversion, incompatible_keys) -> None:
    frozen = tuple(f'{name}.' for name in module.FROZEN)
    missing = [k for k in incompatible_keys.missing_keys
               if not k.startswith(frozen) and '.base.' not in k]
    incompatible_keys.missing_keys[:] = missing
