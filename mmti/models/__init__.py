from . import pretrained  # noqa: F401  (registers the from_pretrained builders)
from .data_preprocessor import TextualInversionDataPreprocessor
from .placeholder_embedding import PlaceholderEmbedding
from .textual_inversion import TextualInversion

__all__ = ['PlaceholderEmbedding', 'TextualInversion', 'TextualInversionDataPreprocessor']
