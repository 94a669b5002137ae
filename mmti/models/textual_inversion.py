"""Textual Inversion (Gal et al. 2022, arXiv 2208.01618) on Stable Diffusion.

The whole algorithm is :meth:`TextualInversion.loss`: encode the images to
latents, noise them at a random timestep, condition the frozen UNet on a
caption that contains the placeholder, and regress the noise (or velocity).
Only the placeholder rows of the token table receive gradients.

Around it: :mod:`.concept_vocabulary` (placeholders in every tokenizer and
table, changed all-or-nothing), :mod:`.concept_files` (embedding files in and
out), :mod:`.sampling` (diffusers pipelines from the model's own modules),
:mod:`.trainable_state` (checkpoints hold the concept rows only).
"""
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline
from mmengine.model import BaseModel

from mmti.datasets.concept_specs import MODEL_KEYS, check_concept_list
from mmti.datasets.templates import fill_template
from mmti.registry import MODELS
from .concept_files import ConceptFilesMixin
from .concept_vocabulary import ConceptVocabulary, TextSlot
from .latents import encode_posterior
from .data_preprocessor import TextualInversionDataPreprocessor
from .placeholder_embedding import PlaceholderEmbedding
from .placeholder_tokens import single_token_id, vector_token_names
from .pretrained import build_component, torch_dtype
from .sampling import DiffusersSamplingMixin
from .sample_noise import SampleNoise, timestep_range, weights_dtype
from .trainable_state import ignore_missing_frozen_keys, keep_trainable_state


@MODELS.register_module()
class TextualInversion(ConceptFilesMixin, DiffusersSamplingMixin, BaseModel):
    """Learn a new word for a frozen Stable Diffusion model.

    Args:
        pretrained_model (str): Hub id or local diffusers folder that every
            component is loaded from unless its own config says otherwise.
        placeholder_token (str): The new word, e.g. ``'<cat-toy>'``.
        concepts (list[dict] | None): Many concepts at once, instead of
            ``placeholder_token`` and the four keys after it: one dict per
            concept with those keys (see :mod:`mmti.datasets.concept_specs`).
            Each concept's rows learn only from samples of that concept.
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
        train_timesteps (Sequence[int] | None): ``(first, end)``: training
            draws timesteps from ``first`` to ``end - 1`` only (the learning
            signal too, as it is the training objective). None: all of the
            noise scheduler's. See docs/fast_concepts.md.
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
            slow); a string names the backend. Inductor is refused on CPU,
            where it gave this UNet wrong gradients w.r.t. the text states
            (tests/test_models/test_speed_switches.py).
        validation_prompts (Sequence[str]): Rendered by :meth:`val_step`;
            ``{}`` stands for ``placeholder_token`` (``'a {} bag'``), so the
            prompts follow the token wherever it is changed.
        validation_cfg (dict | None): Keyword arguments of :meth:`infer` for
            validation renders (seed, steps, size ...).
        data_preprocessor (dict | None): Defaults to
            ``TextualInversionDataPreprocessor``.
    """

    FROZEN = ('unet', 'vae', 'text_encoder')  # pretrained: never trained, never checkpointed
    TEXT_SLOTS = ('text_encoder',)  # what messages call each text encoder
    DEFAULT_FORMAT = 'diffusers'  # of saved embedding files
    DEFAULT_GUIDANCE = 7.5
    PIPELINE = StableDiffusionPipeline

    def __init__(self,
                 pretrained_model: str,
                 placeholder_token: str | None = None,
                 initializer_token: str | None = None,
                 num_vectors: int = 1,
                 initial_embedding: str | None = None,
                 initial_embedding_token: str | None = None,
                 tokenizer: dict | None = None,
                 text_encoder: dict | None = None,
                 vae: dict | None = None,
                 unet: dict | None = None,
                 noise_scheduler: dict | None = None,
                 train_timesteps: Sequence[int] | None = None,
                 inference_scheduler: str | dict | None = None,
                 dtype: str = 'fp32',
                 latent_cache: bool = True,
                 gradient_checkpointing: bool = False,
                 compile_unet: bool | str = False,
                 validation_prompts: Sequence[str] = (),
                 validation_cfg: dict | None = None,
                 data_preprocessor: dict | None = None,
                 concepts: Sequence[dict] | None = None,
                 init_cfg: dict | None = None):
        super().__init__(
            data_preprocessor=data_preprocessor or dict(type=TextualInversionDataPreprocessor),
            init_cfg=init_cfg)
        specs = _concept_specs(concepts, placeholder_token, initializer_token, num_vectors,
                               initial_embedding, initial_embedding_token)
        self.pretrained_model = pretrained_model
        self.placeholder_token = specs[0]['placeholder_token']  # the first, when there are many
        weights_dtype_ = torch_dtype(dtype)
        self.tokenizer = build_component(
            tokenizer or dict(type='CLIPTokenizer'), pretrained_model, subfolder='tokenizer')
        self.text_encoder = build_component(
            text_encoder or dict(type='CLIPTextModel'), pretrained_model,
            subfolder='text_encoder', torch_dtype=weights_dtype_)
        self.vae = build_component(
            vae or dict(type='AutoencoderKL'), pretrained_model, subfolder='vae',
            torch_dtype=weights_dtype_)
        self.unet = build_component(
            unet or dict(type='UNet2DConditionModel'), pretrained_model, subfolder='unet',
            torch_dtype=weights_dtype_)
        self.noise_scheduler = build_component(
            noise_scheduler or dict(type='DDPMScheduler'), pretrained_model, subfolder='scheduler')
        self.train_timesteps = timestep_range(train_timesteps,
                                              self.noise_scheduler.config.num_train_timesteps)
        self.inference_scheduler_cfg = self._check_scheduler(inference_scheduler)
        # The placeholder rows live beside the frozen table, not inside it.
        self.token_embedding = self._placeholder_table(self.tokenizer, self.text_encoder)
        self._build_more_text_encoders(weights_dtype_)
        for name in self.FROZEN:
            getattr(self, name).requires_grad_(False)  # eval mode: _set_modes below
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        if compile_unet:
            self._compile_unet('inductor' if compile_unet is True else compile_unet)
        self.latent_cache = {} if latent_cache else None

        # Every tokenizer, table and the prompt expander change together, here only.
        self.vocabulary = ConceptVocabulary([
            TextSlot(name, tokenizer, table)
            for name, (tokenizer, table) in zip(self.TEXT_SLOTS, self._text_encoders())])
        for spec in specs:
            start = spec.get('initial_embedding')
            self.vocabulary.add(spec['placeholder_token'], self._start_rows(spec), trainable=True,
                                origin=f'initial_embedding {start}' if start else 'the config',
                                rename="set the config's placeholder_token")
        self.placeholder_tokens = [spec['placeholder_token'] for spec in specs]

        self.validation_templates = list(validation_prompts)
        self.validation_prompts = [fill_template(p, token) for token in self.placeholder_tokens
                                   for p in validation_prompts]
        self.validation_cfg = dict(validation_cfg or {})
        # Checkpoints hold only what training changes (the concept rows).
        self.register_state_dict_post_hook(keep_trainable_state)
        self.register_load_state_dict_post_hook(ignore_missing_frozen_keys)
        # Every module's mode, the placeholder tables inside the frozen
        # encoders included, is set once here; train() then only acts on change.
        self._set_modes(self.training)

    def _start_rows(self, spec: dict) -> list[torch.Tensor]:
        """A concept's first rows, one tensor per text encoder."""
        num_vectors = spec.get('num_vectors', 1)
        if spec.get('initial_embedding') is not None:
            return self._initial_rows(spec['initial_embedding'], spec.get('initial_embedding_token'),
                                      num_vectors, spec['placeholder_token'])
        if spec.get('initializer_token') is not None:
            return [table.base.weight[single_token_id(tokenizer, spec['initializer_token'])]
                    .detach().repeat(num_vectors, 1) for tokenizer, table in self._text_encoders()]
        raise ValueError(f'Set initializer_token for {spec["placeholder_token"]} (one word such as "toy") or '
                         'initial_embedding (an embedding file to start from).')

    @staticmethod
    def _placeholder_table(tokenizer, text_encoder) -> PlaceholderEmbedding:
        table = PlaceholderEmbedding(text_encoder.get_input_embeddings(), first_new_id=len(tokenizer))
        text_encoder.set_input_embeddings(table)
        return table

    def _build_more_text_encoders(self, weights_dtype_: torch.dtype) -> None:
        """Models with a second text encoder (SDXL) build it here, with its own
        placeholder table, before any concept is added."""

    def _text_encoders(self) -> list[tuple]:
        """(tokenizer, placeholder table) of every text encoder, in TEXT_SLOTS order."""
        return [(self.tokenizer, self.token_embedding)]

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
        return self.vocabulary.concepts

    @property
    def expand_prompt(self):
        """Rewrites ``<tok>`` as all of its vector tokens."""
        return self.vocabulary.expand_prompt

    def tokenize(self, prompts: Sequence[str], tokenizer=None) -> torch.Tensor:
        """Token ids ``[B, max_length]`` with placeholders expanded (cached per prompt)."""
        slot = 0 if tokenizer is None else [t for t, _ in self._text_encoders()].index(tokenizer)
        return self.vocabulary.tokenize(prompts, slot)

    def trainable_token_ids(self) -> list[int]:
        """Tokenizer ids of every trainable placeholder row (first text encoder)."""
        return self.vocabulary.trainable_ids(0)

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text-encoder hidden states ``[B, max_length, dim]`` for the UNet."""
        ids = self.tokenize(prompts).to(self.token_embedding.base.weight.device)
        return self.text_encoder(ids)[0]

    # --------------------------------------------------------------- training
    def loss(self, images: torch.Tensor, captions: Sequence[str],
             noise_seeds: Sequence[int] | None = None,
             latent_keys: Sequence[str | None] | None = None,
             time_ids: torch.Tensor | None = None,
             concepts: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
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
            concepts: The concept of each sample, when a batch mixes several:
                the loss is then the sum of each concept's mean, so each
                concept's rows get the gradient its samples alone would give.
        """
        rng = SampleNoise(noise_seeds, images.shape[0], images.device)
        with torch.no_grad():
            mean, std = self.encode_posterior(images, latent_keys)
            latents = mean + std * rng.randn(mean.shape[1:])
            latents = latents.to(torch.promote_types(latents.dtype, torch.float32))
            latents = latents * self.vae.config.scaling_factor
        noise = rng.randn(latents.shape[1:])
        timesteps = rng.randint(*self.train_timesteps)
        noisy_latents = self.noise_scheduler.add_noise(latents, noise, timesteps)

        text_states, unet_kwargs = self.condition(captions, time_ids)
        unet_dtype = weights_dtype(self.unet)
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
        prediction, target = prediction.to(loss_dtype), target.to(loss_dtype)
        groups = concept_groups(concepts)
        if len(groups) <= 1:
            return {'loss': F.mse_loss(prediction, target)}
        return {'loss': sum(F.mse_loss(prediction[i], target[i])
                            for i in (torch.tensor(g, device=prediction.device) for g in groups))}

    def condition(self, captions: Sequence[str],
                  time_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """What the UNet is conditioned on: text states and extra UNet kwargs."""
        return self.encode_prompt(captions), {}

    def encode_posterior(self, images: torch.Tensor,
                         keys: Sequence[str | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of each image's latent distribution (see :func:`.latents.encode_posterior`)."""
        return encode_posterior(self.vae, images, keys, self.latent_cache)

    def forward(self, inputs: torch.Tensor, captions: Sequence[str] | None = None,
                noise_seeds: Sequence[int] | None = None,
                latent_keys: Sequence[str | None] | None = None,
                time_ids: torch.Tensor | None = None, concepts: Sequence[str] | None = None,
                mode: str = 'loss'):
        if mode == 'loss':
            return self.loss(inputs, captions, noise_seeds, latent_keys, time_ids, concepts)
        if mode in ('predict', 'tensor'):
            return self.infer(list(captions))
        raise ValueError(f'Unknown mode {mode!r}.')

    def train(self, mode: bool = True) -> 'TextualInversion':
        # mmengine's loop calls train() before every step, and a full walk of
        # SD's ~1100 modules each time is a visible part of a small step.
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


def concept_groups(concepts: Sequence[str] | None) -> list[list[int]]:
    """Sample positions of each concept, in first-seen order (``[]`` for None)."""
    groups: dict[str, list[int]] = {}
    for position, concept in enumerate(concepts or ()):
        groups.setdefault(concept, []).append(position)
    return list(groups.values())


def _concept_specs(concepts, placeholder_token, initializer_token, num_vectors, initial_embedding,
                   initial_embedding_token) -> list[dict]:
    """The concepts to train: the ``concepts`` list, or the one of the single-concept keys."""
    single = dict(placeholder_token=placeholder_token, initializer_token=initializer_token,
                  num_vectors=num_vectors, initial_embedding=initial_embedding,
                  initial_embedding_token=initial_embedding_token)
    if concepts is None:
        if placeholder_token is None:
            raise ValueError('Set placeholder_token (the new word, e.g. "<cat-toy>"), or '
                             'concepts=[...] to learn several at once.')
        specs = [single]
    else:
        given = [k for k, v in single.items() if v is not None and k != 'num_vectors'] + (
            ['num_vectors'] if num_vectors != 1 else [])
        if given:
            raise ValueError(f'model has both concepts=[...] and {given[0]}; with a concept list '
                             f'each concept sets its own {given[0]} (in its dict).')
        specs = [{k: v for k, v in spec.items() if k in MODEL_KEYS}
                 for spec in check_concept_list(concepts, 'model.concepts')]
    for spec in specs:
        count = spec.get('num_vectors', 1)
        if isinstance(count, bool) or not isinstance(count, int):
            raise ValueError(f'num_vectors must be a whole number >= 1, got {count!r}.')
        vector_token_names(spec['placeholder_token'], count)  # validates num_vectors early
    return specs
