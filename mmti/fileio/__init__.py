from .atomic_write import atomic_write
from .embedding_file import (FORMATS, EmbeddingFile, describe_dim, read_embedding_file,
                             read_embeddings, write_embedding_file, write_embeddings)
from .sample_names import prompt_slug, sample_filename

__all__ = ['FORMATS', 'EmbeddingFile', 'atomic_write', 'describe_dim', 'read_embedding_file',
           'prompt_slug', 'read_embeddings', 'sample_filename', 'write_embedding_file',
           'write_embeddings']
