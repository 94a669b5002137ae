"""Concept rows from wherever a user has them: files, folders, dicts.

Every source becomes ``{token: [rows per text encoder]}``; checking the rows
themselves (shape, dimension, finite values) is the vocabulary's job.
"""
from collections.abc import Mapping, Sequence
from pathlib import Path


from mmti.fileio import (clip_g_half_problem, describe_dim, describe_rows, read_embedding_pair,
                         second_file)


def read_concepts(source, token: str | None, slot_names: Sequence[str],
                  dims: Sequence[int] = ()) -> tuple[dict[str, list], str]:
    """Read one source for a model whose text encoders are ``slot_names``.

    Args:
        source: An embedding file or folder (any layout mmti reads), or a
            dict ``{token: rows}`` (one encoder) / ``{token: (rows_1, rows_2)}``.
        token: New name for a single-concept source.
        slot_names: e.g. ``['text_encoder']`` or ``['clip_l', 'clip_g']``.
        dims: Their embedding dimensions, for messages.

    Returns:
        tuple: ``({token: [rows per slot]}, description of the source)``.
    """
    if isinstance(source, Mapping):
        concepts = {name: _per_slot(value) for name, value in source.items()}
        origin = 'the given dict'
    elif isinstance(source, (str, Path)):
        concepts, origin = _read_file(Path(source), token, slot_names, dims), str(source)
    else:
        raise TypeError(f'Cannot load embeddings from a {type(source).__name__}; give a file, a '
                        'folder or a {token: rows} dict.')
    if token is not None and isinstance(source, Mapping):
        if len(concepts) != 1:
            raise ValueError(f'token={token!r} renames one concept, but {origin} has {list(concepts)}.')
        concepts = {token: next(iter(concepts.values()))}
    if not concepts:
        raise ValueError(f'{origin} holds no embeddings.')
    return concepts, origin


def _per_slot(value) -> list:
    # A tuple/list of tensors or arrays is one entry per text encoder;
    # anything else (a tensor, an array, nested numbers) is one encoder's rows.
    if isinstance(value, (list, tuple)) and value and all(hasattr(v, 'shape') for v in value):
        return list(value)
    return [value]


def _read_file(path: Path, token: str | None, slot_names: Sequence[str],
               dims: Sequence[int]) -> dict[str, list]:
    # The pair's second file beside a first one makes both one SDXL embedding,
    # so its clip_l half is never taken for an SD 1.x one.
    contents = read_embedding_pair(path, token=token)
    first, second = contents.embeddings, contents.embeddings_2
    half = clip_g_half_problem(path)
    if half:
        raise ValueError(f'{half}.')
    if len(slot_names) == 1:
        if second:
            own = f' of dimension {describe_dim(dims[0])}' if dims else ''
            kind = ('the first file of an SDXL pair' if contents.format != 'sdxl'
                    else 'an SDXL embedding')
            raise ValueError(f'{path} is {kind} (dimension {describe_rows(contents)}); this '
                             f'model has one text encoder{own}. Use it with an SDXL model, or '
                             'keep only its clip_l rows with tools/convert_embeddings.py '
                             '--first-encoder-only.')
        return {name: [rows] for name, rows in first.items()}
    if not second:
        beside = second_file(path)
        why = (f'; {beside.name} beside it is not its {slot_names[1]} half (other concepts, '
               'row counts or widths)' if beside.is_file() else '')
        raise ValueError(
            f'{path} holds rows for one text encoder{why}; SDXL needs {slot_names[1]} rows too '
            f'(an SDXL file with clip_l and clip_g, or the diffusers pair with {beside.name}).')
    if list(first) != list(second):
        raise ValueError(f'{path}: the text encoders name different concepts ({slot_names[0]}: '
                         f'{list(first)}, {slot_names[1]}: {list(second)}); the file is inconsistent.')
    return {name: [first[name], second[name]] for name in first}
