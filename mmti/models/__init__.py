from . import pretrained  # noqa: F401  (registers the from_pretrained builders)
from .data_preprocessor import TextualInversionDataPreprocessor
from .placeholder_embedding import PlaceholderEmbedding
from .textual_inversion import TextualInversion
from .textual_inversion_xl import TextualInversionXL

__all__ = ['PlaceholderEmbedding', 'TextualInversion', 'TextualInversionDataPreprocessor',
           'TextualInversionXL']
