from .atomic_write import atomic_write
from .embedding_file import (FORMATS, EmbeddingFile, describe_dim, read_embedding_file,
                             read_embeddings, write_embedding_file, write_embeddings)

__all__ = ['FORMATS', 'EmbeddingFile', 'atomic_write', 'describe_dim', 'read_embedding_file',
           'read_embeddings', 'write_embedding_file', 'write_embeddings']
