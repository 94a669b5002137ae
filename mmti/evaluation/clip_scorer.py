"""Unit-norm CLIP image and text features from a local CLIP folder.

Images are prepared by transformers' own CLIP recipe (``CLIPImageProcessorPil``:
shorter side to the vision tower's size, bicubic, centre crop, normalise), the
PIL backend, so no torchvision is needed.
"""
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from transformers import CLIPImageProcessorPil
from transformers.utils.constants import OPENAI_CLIP_MEAN as CLIP_MEAN
from transformers.utils.constants import OPENAI_CLIP_STD as CLIP_STD

__all__ = ['CLIP_MEAN', 'CLIP_STD', 'ClipScorer', 'preprocess_images']


def preprocess_images(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """PIL images -> float tensor [N, 3, size, size], CLIP-normalised."""
    images = list(images)
    if not images:
        return torch.empty(0, 3, size, size)
    processor = CLIPImageProcessorPil(size={'shortest_edge': size},
                                      crop_size={'height': size, 'width': size})
    return processor(images=[image.convert('RGB') for image in images],
                     return_tensors='pt')['pixel_values']


class ClipScorer:
    """A CLIP model (``transformers.CLIPModel`` + ``CLIPTokenizer``) from a folder.

    Args:
        model_dir: Local folder with the CLIP config, weights and tokenizer
            files (what ``save_pretrained`` writes), e.g. a copy of
            ``openai/clip-vit-base-patch32``. Nothing is downloaded.
        device: Where the model runs.
        batch_size: Images or texts per forward pass.
    """

    def __init__(self, model_dir: str, device: str | torch.device = 'cpu', batch_size: int = 32):
        from transformers import CLIPModel, CLIPTokenizer
        path = Path(model_dir)
        if not path.is_dir():
            raise FileNotFoundError(f'CLIP folder {model_dir} does not exist.')
        if not (path / 'config.json').is_file():
            raise FileNotFoundError(
                f'CLIP folder {model_dir} has no config.json; expected a local copy of a CLIP '
                'model (e.g. openai/clip-vit-base-patch32) saved with save_pretrained.')
        weights = ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin',
                   'pytorch_model.bin.index.json')
        if not any((path / name).is_file() for name in weights):
            raise FileNotFoundError(
                f'CLIP folder {model_dir} has no weights ({", ".join(weights)}).')
        if batch_size < 1:
            raise ValueError(f'batch_size must be at least 1, got {batch_size}.')
        self.model_dir = str(model_dir)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = CLIPModel.from_pretrained(str(path), local_files_only=True)
        self.model.to(self.device).eval().requires_grad_(False)
        self.tokenizer = CLIPTokenizer.from_pretrained(str(path), local_files_only=True)
        self.image_size = int(self.model.config.vision_config.image_size)
        self.max_length = min(int(self.tokenizer.model_max_length),
                              int(self.model.config.text_config.max_position_embeddings))

    @property
    def dtype(self) -> torch.dtype:
        return self.model.visual_projection.weight.dtype

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return preprocess_images(images, self.image_size)

    @torch.no_grad()
    def image_features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """L2-normalised image embeddings, float32 [N, D] on the CPU."""
        images = list(images)
        out = []
        for start in range(0, len(images), self.batch_size):
            pixels = self.preprocess(images[start:start + self.batch_size])
            out.append(self.pixel_features(pixels.to(self.device, self.dtype)).cpu())
        return torch.cat(out) if out else torch.empty(0, self.model.config.projection_dim)

    def pixel_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised float32 embeddings of prepared pixels ``[N, 3, S, S]``
        (as :meth:`preprocess` gives them), on the model's device. Keeps the
        autograd graph, for guiding something upstream of the pixels."""
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output
        return self._normalise([self.model.visual_projection(pooled).float()])

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings, float32 [N, D] on the CPU."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start:start + self.batch_size], padding=True,
                                    truncation=True, max_length=self.max_length,
                                    return_tensors='pt')
            pooled = self.model.text_model(
                input_ids=tokens['input_ids'].to(self.device),
                attention_mask=tokens['attention_mask'].to(self.device)).pooler_output
            out.append(self.model.text_projection(pooled).float().cpu())
        return self._normalise(out)

    def _normalise(self, chunks: list[torch.Tensor]) -> torch.Tensor:
        if not chunks:
            return torch.empty(0, self.model.config.projection_dim)
        features = torch.cat(chunks)
        return features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
