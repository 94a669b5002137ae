from .atomic_write import atomic_write
from .embedding_file import read_embeddings, write_embeddings

__all__ = ['atomic_write', 'read_embeddings', 'write_embeddings']
