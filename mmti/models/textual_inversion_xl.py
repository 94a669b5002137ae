"""Textual Inversion for SDXL: the placeholder lives in both text encoders.

SDXL conditions its UNet on two text encoders (CLIP ViT-L, 768-d, and
OpenCLIP ViT-bigG, 1280-d): their penultimate hidden states, concatenated,
and the projected pooled output of the second, plus per-image "time ids"
(original size, crop corner, target size). So the new word gets rows in both
tables, and both train. The algorithm is :meth:`TextualInversion.loss`; this
class changes what the UNet is conditioned on and how embeddings are stored
(``{"clip_l": [n, 768], "clip_g": [n, 1280]}``, what A1111/ComfyUI read).
"""
import secrets
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline
from PIL import Image

from mmti.fileio import describe_dim, read_embedding_file, write_embedding_file
from mmti.registry import MODELS
from .placeholder_embedding import PlaceholderEmbedding
from .placeholder_tokens import add_placeholder_tokens, remove_added_tokens, single_token_id, vector_token_names
from .pretrained import build_component
from .textual_inversion import TextualInversion, _weights_dtype


def _second_file(path: Path) -> Path:
    """diffusers' SDXL pair: learned_embeds.safetensors + learned_embeds_2.safetensors."""
    return path.with_name(f'{path.stem}_2{path.suffix}')


@MODELS.register_module()
class TextualInversionXL(TextualInversion):
    """Learn a new word for a frozen SDXL model (both text encoders).

    Args:
        tokenizer_2, text_encoder_2 (dict | None): The second tokenizer and
            encoder (``CLIPTextModelWithProjection``); default: the
            ``tokenizer_2``/``text_encoder_2`` subfolders.
        Others: as :class:`TextualInversion`.
    """

    FROZEN = ('unet', 'vae', 'text_encoder', 'text_encoder_2')

    def __init__(self, *args, tokenizer_2: dict | None = None, text_encoder_2: dict | None = None,
                 **kwargs):
        # Read by _build_more_text_encoders, which the base constructor calls.
        self._second_cfg = dict(tokenizer_2=tokenizer_2, text_encoder_2=text_encoder_2)
        super().__init__(*args, **kwargs)

    def _build_more_text_encoders(self, weights_dtype: torch.dtype) -> None:
        cfg = self._second_cfg
        self.tokenizer_2 = build_component(cfg['tokenizer_2'] or dict(type='CLIPTokenizer'),
                                           self.pretrained_model, subfolder='tokenizer_2')
        self.text_encoder_2 = build_component(
            cfg['text_encoder_2'] or dict(type='CLIPTextModelWithProjection'),
            self.pretrained_model, subfolder='text_encoder_2', torch_dtype=weights_dtype)
        self.text_encoder_2.requires_grad_(False)  # put in eval with the other frozen parts
        self.token_embedding_2 = PlaceholderEmbedding(
            self.text_encoder_2.get_input_embeddings(), first_new_id=len(self.tokenizer_2))
        self.text_encoder_2.set_input_embeddings(self.token_embedding_2)

    def _encoders(self):
        return [(self.tokenizer, self.token_embedding), (self.tokenizer_2, self.token_embedding_2)]

    # ------------------------------------------------------------------ tokens
    def _add_concept(self, token: str, rows, trainable: bool) -> None:
        rows_pair = list(rows) if isinstance(rows, (list, tuple)) else [rows, None]
        encoders = self._encoders()
        if rows_pair[1] is None:  # initialised from a word: look it up in the second table too
            raise ValueError(f'{token!r} needs rows for both SDXL text encoders.')
        names = vector_token_names(token, rows_pair[0].shape[0])
        for (tokenizer, table), rows_i in zip(encoders, rows_pair):
            if rows_i.ndim != 2 or rows_i.shape[1] != table.embedding_dim:
                raise ValueError(f'Embedding for {token!r} has shape {tuple(rows_i.shape)}; this '
                                 f'text encoder needs dimension {describe_dim(table.embedding_dim)}.')
        self._token_cache.clear()
        added = []
        try:
            for tokenizer, table in encoders:
                ids = add_placeholder_tokens(tokenizer, names)
                added.append(tokenizer)
                if ids[0] != table.num_embeddings:
                    raise RuntimeError('Tokenizer and placeholder table are out of step.')
        except Exception:
            for tokenizer in added:
                remove_added_tokens(tokenizer, names)
            raise
        for (_, table), rows_i in zip(encoders, rows_pair):
            table.add_concept(token, rows_i, trainable=trainable)
        self.expand_prompt.add(token, names)

    def _initial_word_rows(self, initializer_token: str, num_vectors: int):
        rows = []
        for tokenizer, table in self._encoders():
            init_id = single_token_id(tokenizer, initializer_token)
            rows.append(table.base.weight[init_id].detach().repeat(num_vectors, 1))
        return rows

    def encode_prompt_xl(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, 77, d1 + d2], [B, proj])``: penultimate states of both encoders
        and the pooled, projected output of the second."""
        device = self.token_embedding.base.weight.device
        ids_1 = self.tokenize(prompts, self.tokenizer).to(device)
        ids_2 = self.tokenize(prompts, self.tokenizer_2).to(device)
        out_1 = self.text_encoder(ids_1, output_hidden_states=True)
        out_2 = self.text_encoder_2(ids_2, output_hidden_states=True)
        # Pool at the first end-of-text token. Some configs pool at argmax(id),
        # which would pick a placeholder (its id is above end-of-text).
        eos = (ids_2 == self.tokenizer_2.eos_token_id).int().argmax(dim=-1)
        last = out_2.last_hidden_state[torch.arange(ids_2.shape[0], device=device), eos]
        pooled = self.text_encoder_2.text_projection(last.to(self.text_encoder_2.text_projection.weight.dtype))
        states = torch.cat([out_1.hidden_states[-2], out_2.hidden_states[-2].to(out_1.hidden_states[-2].dtype)],
                           dim=-1)
        return states, pooled

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.encode_prompt_xl(prompts)[0]

    def condition(self, captions, time_ids=None):
        states, pooled = self.encode_prompt_xl(captions)
        if time_ids is None:
            h, w = self.native_image_size()
            time_ids = torch.tensor([[h, w, 0, 0, h, w]] * len(captions), dtype=torch.float32)
        dtype = _weights_dtype(self.unet)
        return states, {'added_cond_kwargs': {
            'text_embeds': pooled.to(dtype),
            'time_ids': time_ids.to(device=states.device, dtype=dtype)}}

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def infer(self, prompt, negative_prompt=None, num_inference_steps: int = 50,
              guidance_scale: float = 5.0, height: int | None = None, width: int | None = None,
              num_images_per_prompt: int = 1, seed: int | None = None, scheduler=None,
              show_progress: bool = True, **pipeline_kwargs) -> dict[str, list[Image.Image]]:
        """Sample with diffusers' SDXL pipeline built from this model's modules.

        An empty or missing negative prompt is all zeros, as SDXL was trained.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        native_h, native_w = self.native_image_size()
        height, width = height or native_h, width or native_w
        states, pooled = self.encode_prompt_xl(prompts)
        if negative_prompt in (None, ''):
            neg_states, neg_pooled = torch.zeros_like(states), torch.zeros_like(pooled)
        else:
            negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else negative_prompt
            neg_states, neg_pooled = self.encode_prompt_xl(list(negatives))
        was_training = self.training
        self.eval()
        try:
            pipeline = StableDiffusionXLPipeline(
                vae=self.vae, text_encoder=self.text_encoder, text_encoder_2=self.text_encoder_2,
                tokenizer=self.tokenizer, tokenizer_2=self.tokenizer_2, unet=self.unet,
                scheduler=self.build_inference_scheduler(scheduler), add_watermarker=False)
            pipeline.set_progress_bar_config(disable=not show_progress)
            generator = torch.Generator(device=self.unet.device).manual_seed(
                secrets.randbits(63) if seed is None else int(seed))
            images = pipeline(
                prompt_embeds=states, pooled_prompt_embeds=pooled,
                negative_prompt_embeds=neg_states, negative_pooled_prompt_embeds=neg_pooled,
                num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                height=height, width=width, num_images_per_prompt=num_images_per_prompt,
                generator=generator, output_type='pil', **pipeline_kwargs).images
        finally:
            self.train(was_training)
        return {'samples': images}

    # ------------------------------------------------------------- embeddings
    def get_embeddings_xl(self, tokens: Sequence[str] | None = None):
        """``({token: clip_l rows}, {token: clip_g rows})`` as fp32 copies."""
        tokens = self.concepts if tokens is None else list(tokens)
        first = {t: self.token_embedding.concept_rows(t).detach().float().cpu().clone() for t in tokens}
        second = {t: self.token_embedding_2.concept_rows(t).detach().float().cpu().clone() for t in tokens}
        return first, second

    def save_embeddings(self, path: str, tokens: Sequence[str] | None = None,
                        step: int | None = None, format: str = 'sdxl') -> str:
        """Write ``{"clip_l", "clip_g"}`` (default) or, with ``format='diffusers'``,
        the ``learned_embeds.safetensors`` + ``learned_embeds_2.safetensors`` pair."""
        first, second = self.get_embeddings_xl([self.placeholder_token] if tokens is None else tokens)
        meta = {'base_model': str(self.pretrained_model)}
        if format == 'sdxl':
            return str(write_embedding_file(path, first, 'sdxl', embeddings_2=second, step=step,
                                            metadata=meta))
        write_embedding_file(_second_file(Path(path)), second, format, step=step, metadata=meta)
        return str(write_embedding_file(path, first, format, step=step, metadata=meta))

    def _read_source(self, item, token):
        if isinstance(item, dict):
            if not all(isinstance(v, (list, tuple)) and len(v) == 2 for v in item.values()):
                raise ValueError('For SDXL give {token: (clip_l rows, clip_g rows)}.')
            pairs = {str(k): (v[0], v[1]) for k, v in item.items()}
        else:
            contents = read_embedding_file(item, token=token)
            if contents.embeddings_2:
                pairs = {k: (v, contents.embeddings_2[k]) for k, v in contents.embeddings.items()}
            else:
                second_path = _second_file(Path(item)) if not Path(item).is_dir() else \
                    Path(item) / 'learned_embeds_2.safetensors'
                if not second_path.is_file():
                    raise ValueError(
                        f'{item} holds rows for one text encoder; SDXL needs clip_g rows too (an '
                        f'sdxl file, or the diffusers pair with {second_path.name}).')
                second = read_embedding_file(second_path, token=token).embeddings
                pairs = {k: (v, second[k]) for k, v in contents.embeddings.items()}
        for name, (rows_l, rows_g) in pairs.items():
            for rows, table in ((rows_l, self.token_embedding), (rows_g, self.token_embedding_2)):
                if rows.ndim != 2 or rows.shape[1] != table.embedding_dim:
                    raise ValueError(
                        f'Embedding {name!r} has shape {tuple(rows.shape)}, but this SDXL encoder '
                        f'uses dimension {describe_dim(table.embedding_dim)}.')
        return pairs

    def load_embeddings(self, source, token: str | None = None, replace: bool = False) -> list[str]:
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        loaded = []
        for item in sources:
            for name, (rows_l, rows_g) in self._read_source(item, token).items():
                if name in self.concepts:
                    if not (replace or name == self.placeholder_token):
                        raise ValueError(f'Token {name!r} is already loaded; pass replace=True to overwrite it.')
                    for table, rows in ((self.token_embedding, rows_l), (self.token_embedding_2, rows_g)):
                        current = table.concept_rows(name)
                        if current.shape != rows.shape:
                            raise ValueError(f'{name!r} has {current.shape[0]} vector(s) here but '
                                             f'{rows.shape[0]} in the file.')
                        with torch.no_grad():
                            current.copy_(rows.to(current))
                else:
                    self._add_concept(name, [rows_l, rows_g], trainable=False)
                loaded.append(name)
        return loaded
