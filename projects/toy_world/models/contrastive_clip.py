"""A small CLIP trained contrastively on toy-world captions (Radford et al. 2021).

Its text tower later becomes the text encoder of a toy Stable Diffusion, so it
uses the real CLIP BPE tokenizer and SD's layout: vocabulary 49408, 77
positions, end-of-text (49407) as both eos and pad, pooled at the first eos.
Training pads only to ``max_length`` (captions are short); the exported
tokenizer still says 77, the length Stable Diffusion pads prompts to.
"""
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from transformers import CLIPConfig, CLIPModel, CLIPTextModel, CLIPTokenizer
from transformers.utils.constants import OPENAI_CLIP_MEAN as CLIP_MEAN
from transformers.utils.constants import OPENAI_CLIP_STD as CLIP_STD

from mmti.registry import MODELS
from .autoencoder_pretraining import atomic_export
from mmti.models.data_preprocessor import TextualInversionDataPreprocessor

SD_MAX_LENGTH = 77  # Stable Diffusion pads every prompt to 77 tokens

# The real CLIP BPE vocabulary and special tokens, as in SD's text encoder.
CLIP_TEXT_DEFAULTS = dict(vocab_size=49408, max_position_embeddings=SD_MAX_LENGTH,
                          bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
                          hidden_act='quick_gelu')


@MODELS.register_module()
class ContrastiveCLIP(BaseModel):
    """``transformers.CLIPModel`` from scratch with the symmetric InfoNCE loss.

    Args:
        tokenizer: Folder of a CLIP tokenizer (SD's ``tokenizer`` subfolder).
        text_config: ``CLIPTextConfig`` kwargs (hidden_size, num_hidden_layers,
            num_attention_heads, intermediate_size ...); vocabulary, special
            tokens and 77 positions default to SD's.
        vision_config: ``CLIPVisionConfig`` kwargs; ``image_size`` must be the
            dataset's image size.
        projection_dim: Size of the shared embedding space.
        max_length: Tokens per caption in training (padded/truncated), at most 77.
        init_seed: Seed of the weight initialisation, independent of the
            global RNG.
        upsample_inputs: Accept images smaller than the vision tower's size
            and enlarge them (bicubic), as ``ClipScorer`` enlarges a 32 px
            toy SD sample: train on what evaluation will show.
        data_preprocessor: Defaults to ``TextualInversionDataPreprocessor``.
    """

    def __init__(self,
                 tokenizer: str = 'data/tiny-sd/tokenizer',
                 text_config: dict | None = None,
                 vision_config: dict | None = None,
                 projection_dim: int = 64,
                 max_length: int = 16,
                 init_seed: int = 0,
                 upsample_inputs: bool = False,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None):
        super().__init__(
            data_preprocessor=data_preprocessor or dict(type=TextualInversionDataPreprocessor),
            init_cfg=init_cfg)
        text_config = {**CLIP_TEXT_DEFAULTS, **(text_config or {})}
        if not 2 <= max_length <= text_config['max_position_embeddings']:
            raise ValueError(f'max_length must be in [2, {text_config["max_position_embeddings"]}]'
                             f', got {max_length}.')
        self.tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer))
        if len(self.tokenizer) > text_config['vocab_size']:
            raise ValueError(f'Tokenizer {tokenizer} has {len(self.tokenizer)} tokens, more than '
                             f'vocab_size {text_config["vocab_size"]}.')
        if self.tokenizer.eos_token_id != text_config['eos_token_id']:
            raise ValueError(f'Tokenizer {tokenizer}: eos id {self.tokenizer.eos_token_id} != '
                             f'eos_token_id {text_config["eos_token_id"]}; pooling would use the '
                             'wrong token.')
        self.max_length = int(max_length)
        self.upsample_inputs = upsample_inputs
        config = CLIPConfig(text_config=text_config, vision_config=dict(vision_config or {}),
                            projection_dim=projection_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.clip = CLIPModel(config)
        self.register_buffer('pixel_mean', torch.tensor(CLIP_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('pixel_std', torch.tensor(CLIP_STD).view(1, 3, 1, 1),
                             persistent=False)

    # -- data -----------------------------------------------------------------
    def tokenize(self, captions: Sequence[str]) -> dict:
        tokens = self.tokenizer(list(captions), padding='max_length', truncation=True,
                                max_length=self.max_length, return_tensors='pt')
        return {'input_ids': tokens.input_ids.to(self.pixel_mean.device),
                'attention_mask': tokens.attention_mask.to(self.pixel_mean.device)}

    def normalize(self, inputs: torch.Tensor) -> torch.Tensor:
        """[-1, 1] pixels (the datasets' range) -> CLIP-normalised pixels."""
        size = self.clip.config.vision_config.image_size
        if self.upsample_inputs and inputs.shape[-1] < size and inputs.shape[-2] < size:
            inputs = F.interpolate(inputs.float(), size=(size, size), mode='bicubic',
                                   align_corners=False).clamp(-1, 1)
        if inputs.shape[-2:] != (size, size):
            raise ValueError(f'Images are {tuple(inputs.shape[-2:])}, the vision tower expects '
                             f'{size}x{size}; set vision_config.image_size to the dataset size.')
        pixels = (inputs.float() + 1.0) / 2.0
        return (pixels - self.pixel_mean) / self.pixel_std

    # -- training -------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, captions: Sequence[str] | None = None,
                mode: str = 'loss', **unused):
        if captions is None or len(captions) != len(inputs):
            raise ValueError('ContrastiveCLIP needs one caption per image.')
        out = self.clip(pixel_values=self.normalize(inputs), **self.tokenize(captions),
                        return_loss=mode == 'loss')
        if mode == 'loss':
            return {'loss': out.loss}
        if mode in ('predict', 'tensor'):
            return {'logits_per_image': out.logits_per_image,
                    'logits_per_text': out.logits_per_text}
        raise ValueError(f'Invalid mode {mode!r}: expected "loss", "predict" or "tensor".')

    # -- export ---------------------------------------------------------------
    def _save_tokenizer(self, folder: Path) -> None:
        # Training pads to max_length; Stable Diffusion reads model_max_length.
        old = self.tokenizer.model_max_length
        self.tokenizer.model_max_length = SD_MAX_LENGTH
        try:
            self.tokenizer.save_pretrained(str(folder))
        finally:
            self.tokenizer.model_max_length = old

    def _check_finite(self) -> None:
        for name, param in self.clip.named_parameters():
            if not torch.isfinite(param).all():
                raise FloatingPointError(f'Parameter {name} is not finite; not exporting, so the '
                                         'previous export stays intact.')

    @torch.no_grad()
    def export(self, path: str | os.PathLike) -> Path:
        """Write ``CLIPModel.from_pretrained``/``CLIPTokenizer.from_pretrained``-able
        weights and tokenizer to the folder ``path``, replacing it atomically."""
        self._check_finite()

        def write(tmp: Path) -> None:
            self.clip.save_pretrained(str(tmp))
            self._save_tokenizer(tmp)

        return atomic_export(path, write)

    def text_encoder(self) -> CLIPTextModel:
        """A standalone ``CLIPTextModel`` with a copy of the text tower's weights."""
        config = self.clip.config.text_config
        model = CLIPTextModel(config)
        missing, unexpected = model.load_state_dict(self.clip.text_model.state_dict(), strict=True)
        assert not missing and not unexpected
        return model.eval()

    @torch.no_grad()
    def export_text_encoder(self, path: str | os.PathLike) -> Path:
        """Write the text tower as a ``CLIPTextModel`` folder plus the tokenizer
        (model_max_length 77), the text encoder a toy SD will load."""
        self._check_finite()
        encoder = self.text_encoder()

        def write(tmp: Path) -> None:
            encoder.save_pretrained(str(tmp))
            self._save_tokenizer(tmp)

        return atomic_export(path, write)
