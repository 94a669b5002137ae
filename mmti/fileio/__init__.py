from .atomic_folder import atomic_folder, make_world_readable
from .atomic_write import atomic_write
from .embedding_file import (FORMATS, LAYOUT_SUFFIXES, EmbeddingFile, check_finite,
                             check_layout_suffix, check_token_name, clip_g_half_problem,
                             describe_dim, describe_rows, layout_for, read_embedding_file,
                             read_embedding_pair, second_file, write_embedding_file)
from .output_dir import check_output_dir
from .sample_names import prompt_slug, sample_filename, save_new_sample

__all__ = ['FORMATS', 'LAYOUT_SUFFIXES', 'EmbeddingFile', 'atomic_folder', 'atomic_write',
           'check_finite', 'check_layout_suffix', 'check_output_dir', 'check_token_name',
           'clip_g_half_problem', 'describe_dim', 'describe_rows', 'layout_for',
           'make_world_readable', 'prompt_slug', 'read_embedding_file', 'read_embedding_pair',
           'sample_filename', 'save_new_sample', 'second_file', 'write_embedding_file']
