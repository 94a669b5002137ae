"""Textual Inversion for SDXL: the placeholder lives in both text encoders.

SDXL conditions its UNet on two text encoders (CLIP ViT-L, 768-d, and
OpenCLIP ViT-bigG, 1280-d): their penultimate hidden states, concatenated,
and the projected pooled output of the second, plus per-image "time ids"
(original size, crop corner, target size). So the new word gets rows in both
tables, and both train. Everything else (the loss, the concept vocabulary,
loading and saving, sampling) is :class:`TextualInversion`'s; this class only
says what differs: the second encoder, the conditioning and the pipeline.
"""
from collections.abc import Sequence

import torch
from diffusers import StableDiffusionXLPipeline

from mmti.registry import MODELS
from .pretrained import build_component
from .sample_noise import weights_dtype
from .textual_inversion import TextualInversion


@MODELS.register_module()
class TextualInversionXL(TextualInversion):
    """Learn a new word for a frozen SDXL model (both text encoders).

    Embedding files default to ``{"clip_l": [n, 768], "clip_g": [n, 1280]}``,
    what A1111 and ComfyUI read.

    Args:
        tokenizer_2, text_encoder_2 (dict | None): The second tokenizer and
            encoder (``CLIPTextModelWithProjection``); default: the
            ``tokenizer_2``/``text_encoder_2`` subfolders.
        Others: as :class:`TextualInversion`.
    """

    FROZEN = ('unet', 'vae', 'text_encoder', 'text_encoder_2')
    TEXT_SLOTS = ('clip_l', 'clip_g')
    DEFAULT_FORMAT = 'sdxl'
    DEFAULT_GUIDANCE = 5.0
    PIPELINE = StableDiffusionXLPipeline

    def __init__(self, *args, tokenizer_2: dict | None = None, text_encoder_2: dict | None = None,
                 **kwargs):
        # Read by _build_more_text_encoders, which the base constructor calls.
        self._second_cfg = dict(tokenizer_2=tokenizer_2, text_encoder_2=text_encoder_2)
        super().__init__(*args, **kwargs)

    def _build_more_text_encoders(self, weights_dtype_: torch.dtype) -> None:
        cfg = self._second_cfg
        self.tokenizer_2 = build_component(cfg['tokenizer_2'] or dict(type='CLIPTokenizer'),
                                           self.pretrained_model, subfolder='tokenizer_2')
        self.text_encoder_2 = build_component(
            cfg['text_encoder_2'] or dict(type='CLIPTextModelWithProjection'),
            self.pretrained_model, subfolder='text_encoder_2', torch_dtype=weights_dtype_)
        self.token_embedding_2 = self._placeholder_table(self.tokenizer_2, self.text_encoder_2)

    def _text_encoders(self) -> list[tuple]:
        return [(self.tokenizer, self.token_embedding), (self.tokenizer_2, self.token_embedding_2)]

    # ------------------------------------------------------------ conditioning
    def encode_prompt_xl(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, 77, d1 + d2], [B, proj])``: penultimate states of both encoders
        and the pooled, projected output of the second."""
        device = self.token_embedding.base.weight.device
        ids_1 = self.vocabulary.tokenize(prompts, 0).to(device)
        ids_2 = self.vocabulary.tokenize(prompts, 1).to(device)
        out_1 = self.text_encoder(ids_1, output_hidden_states=True)
        out_2 = self.text_encoder_2(ids_2, output_hidden_states=True)
        # Pool at the first end-of-text token. Some configs pool at argmax(id),
        # which would pick a placeholder (its id is above end-of-text).
        eos = (ids_2 == self.tokenizer_2.eos_token_id).int().argmax(dim=-1)
        last = out_2.last_hidden_state[torch.arange(ids_2.shape[0], device=device), eos]
        projection = self.text_encoder_2.text_projection
        pooled = projection(last.to(projection.weight.dtype))
        first = out_1.hidden_states[-2]
        states = torch.cat([first, out_2.hidden_states[-2].to(first.dtype)], dim=-1)
        return states, pooled

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.encode_prompt_xl(prompts)[0]

    def condition(self, captions, time_ids=None):
        states, pooled = self.encode_prompt_xl(captions)
        if time_ids is None:
            h, w = self.native_image_size()
            time_ids = torch.tensor([[h, w, 0, 0, h, w]] * len(captions), dtype=torch.float32)
        dtype = weights_dtype(self.unet)
        return states, {'added_cond_kwargs': {
            'text_embeds': pooled.to(dtype),
            'time_ids': time_ids.to(device=states.device, dtype=dtype)}}

    # ---------------------------------------------------------------- sampling
    def pipeline_components(self) -> dict:
        return dict(vae=self.vae, text_encoder=self.text_encoder, text_encoder_2=self.text_encoder_2,
                    tokenizer=self.tokenizer, tokenizer_2=self.tokenizer_2, unet=self.unet,
                    add_watermarker=False)

    def prompt_embeds(self, prompts: list[str], negatives: list[str]) -> dict[str, torch.Tensor]:
        """An empty negative prompt is all zeros, as SDXL was trained."""
        states, pooled = self.encode_prompt_xl(prompts)
        if all(n == '' for n in negatives):
            neg_states, neg_pooled = torch.zeros_like(states), torch.zeros_like(pooled)
        else:
            neg_states, neg_pooled = self.encode_prompt_xl(negatives)
        return dict(prompt_embeds=states, pooled_prompt_embeds=pooled,
                    negative_prompt_embeds=neg_states, negative_pooled_prompt_embeds=neg_pooled)

    def get_embeddings_xl(self, tokens: Sequence[str] | None = None):
        """``({token: clip_l rows}, {token: clip_g rows})`` as fp32 copies."""
        return tuple(self.get_slot_embeddings(tokens))
