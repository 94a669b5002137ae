"""Learned-embedding files in every common layout, read without running code.

Layouts (told apart by content, not by file extension):

=============  ===========================================================
``diffusers``  ``{"<tok>": tensor[n, dim]}`` (or a bare ``[dim]``), as
               ``learned_embeds.safetensors`` or ``.bin``; several tokens
               may share a file.
``a1111``      AUTOMATIC1111 ``.pt``: ``{"string_to_token": {"*": 265},
               "string_to_param": {"*": tensor[n, dim]}, "name", "step",
               "sd_checkpoint", "sd_checkpoint_name"}``.
``safetensors``  A1111/kohya ``{"emb_params": tensor[n, dim]}``.
``sdxl``       ``{"clip_l": [n, 768], "clip_g": [n, 1280]}``, the one-file
               SDXL layout A1111/Forge/ComfyUI read.
=============  ===========================================================

A1111's embedding PNGs (text chunk or pixel strips, see :mod:`.a1111_png`)
are read too: they hold one of the layouts above as JSON. diffusers' SDXL
pair (``learned_embeds.safetensors`` + ``learned_embeds_2.safetensors``) is
read as one by :func:`read_embedding_pair`.

Pickle-based files are opened with ``torch.load(weights_only=True)`` only; a
file that needs anything else is refused, never loaded "unsafely".

Every problem with a file (damaged or truncated, an unknown layout, a row
that is NaN or infinite, an odd token name) is a one-line ``ValueError`` that
names the file; rows that are not finite are refused on write as well, so
such a file is never produced here.
"""
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import io
import json
import safetensors
import safetensors.torch
import torch

from .a1111_png import is_png, read_png_embedding
from .atomic_write import atomic_write

FORMATS = ('diffusers', 'a1111', 'safetensors', 'sdxl')
A1111_STAR_TOKEN_ID = 265  # CLIP's id of "*", which A1111 files name their rows by
DIM_NAMES = {768: 'SD 1.x (or SDXL clip_l)', 1024: 'SD 2.x', 1280: 'SDXL clip_g'}
FOLDER_FILES = ('learned_embeds.safetensors', 'learned_embeds.bin')
# File name endings of each layout: A1111 reads .pt pickles; the others are
# safetensors, except diffusers' older .bin (torch.save, tensors only). A file
# whose ending does not say how to open it is one no other tool can read.
LAYOUT_SUFFIXES = {'diffusers': ('.safetensors', '.bin'), 'a1111': ('.pt',),
                   'safetensors': ('.safetensors',), 'sdxl': ('.safetensors',)}


def layout_for(path: str | os.PathLike, default: str = 'diffusers') -> str:
    """The layout a file name asks for: A1111's for ``.pt``, else ``default``."""
    return 'a1111' if Path(path).suffix.lower() == '.pt' else default


def check_layout_suffix(path: str | os.PathLike, format: str,
                        other: str = 'choose another format') -> None:
    """Refuse a name whose ending says another layout than ``format``;
    ``other`` says how the caller picks another one."""
    path = Path(path)
    if path.suffix.lower() not in LAYOUT_SUFFIXES[format]:
        wanted = ' or '.join(LAYOUT_SUFFIXES[format])
        example = f'{path.stem or "learned_embeds"}{LAYOUT_SUFFIXES[format][0]}'
        raise ValueError(f'{path}: the {format} layout is written as {wanted}, not '
                         f'{path.suffix or "a name without extension"!r} (other tools open a file '
                         f'by its ending); name it e.g. {example} or {other}.')


def describe_dim(dim: int) -> str:
    """'768 (SD 1.x ...)' for the error messages users get on a mismatch."""
    return f'{dim} ({DIM_NAMES[dim]})' if dim in DIM_NAMES else str(dim)


@dataclass
class EmbeddingFile:
    """The contents of one embedding file, whatever its layout.

    Attributes:
        embeddings: ``{token: rows[n, dim]}`` for the (first) text encoder.
        embeddings_2: ``{token: rows[n, 1280]}`` for SDXL's second encoder.
        format: One of :data:`FORMATS`.
        step: Training step, when the file records it.
    """

    embeddings: dict[str, torch.Tensor]
    embeddings_2: dict[str, torch.Tensor] = field(default_factory=dict)
    format: str = 'diffusers'
    step: int | None = None


# ------------------------------------------------------------------- reading
def _is_safetensors(path: Path) -> bool:
    with open(path, 'rb') as f:
        head = f.read(9)
    # safetensors opens with a u64 header length, then the JSON header. A
    # truncated file still starts so; safetensors then says what is wrong.
    return len(head) == 9 and head[8:9] == b'{'


def _read_safetensors(path: Path) -> tuple[dict, dict[str, str]]:
    try:
        with safetensors.safe_open(str(path), framework='pt') as f:
            metadata = dict(f.metadata() or {})
        return safetensors.torch.load_file(str(path)), metadata
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise ValueError(f'{path} is a damaged or truncated safetensors file '
                         f'({_first_line(err)}); re-download or re-export it.') from None


def _is_torch_file(path: Path) -> bool:
    with open(path, 'rb') as f:
        head = f.read(4)
    # torch.save writes a zip archive; before torch 1.6 a bare pickle (0x80 = PROTO).
    return head.startswith(b'PK\x03\x04') or head[:1] == b'\x80'


def _first_line(err: Exception) -> str:
    text = re.sub(r'\x1b\[[0-9;]*m', '', str(err)).strip()  # torch adds terminal colours
    return text.splitlines()[0] if text else type(err).__name__


def _load_pickle_safely(path: Path) -> object:
    if path.stat().st_size == 0:
        raise ValueError(f'{path} is empty (0 bytes); re-download or re-export it.')
    if not _is_torch_file(path):
        raise ValueError(f'{path} is neither a safetensors file nor a torch-saved file; it is '
                         'not an embedding file this library can read.')
    try:
        # A file object, not the path: torch hands paths ending in
        # .safetensors to safetensors, whatever the content.
        with open(path, 'rb') as f:
            return torch.load(f, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        if 'numpy' in str(err):
            raise ValueError(
                f'{path} holds numpy arrays, which a safe load does not read; re-save its rows '
                'as torch tensors (torch.from_numpy) or as .safetensors.') from None
        raise ValueError(
            f'Refusing to load {path}: it is a pickle that needs code beyond plain tensors to '
            'load, and running such code from a file is unsafe. If you trust its author, '
            'convert it to .safetensors in an isolated environment first. '
            f'(torch said: {_first_line(err)})') from None
    # Garbage bytes make torch raise anything (struct.error, EOFError, ...).
    except Exception as err:  # noqa: BLE001
        raise ValueError(f'{path} is a damaged or truncated torch file ({_first_line(err)}); '
                         're-download or re-export it.') from None


KNOWN_LAYOUTS = ('{"<token>": tensor[n, dim]}, A1111 string_to_param, {"emb_params": ...} '
                 'or SDXL clip_l + clip_g')


def check_finite(name: str, rows: torch.Tensor, where: object) -> None:
    """Refuse rows with NaN or infinite values: they turn every image black."""
    if rows.is_floating_point() and not bool(torch.isfinite(rows).all()):
        bad = sorted({int(i) for i in (~torch.isfinite(rows)).nonzero()[:, 0]})
        raise ValueError(f'{where}: embedding {name!r} has NaN or infinite values (vector(s) '
                         f'{bad[:5]}); it is damaged. Use an earlier checkpoint of it.')


def check_token_name(name: object, where: object, one_word: bool = False) -> str:
    """A token name is a string a prompt can contain: not empty, no leading or
    trailing blanks, no line breaks or control characters. A name to load or
    write is also ``one_word`` (A1111 files named ``my style.pt`` are read,
    and loaded under a name without spaces)."""
    if not isinstance(name, str):
        raise ValueError(f'{where}: token name {name!r} is a {type(name).__name__}, not a '
                         'string; re-save the file with string keys like "<cat-toy>".')
    if (not name or name != name.strip()
            or any(not c.isprintable() or (c.isspace() and c != ' ') for c in name)):
        raise ValueError(f'{where}: token name {name!r} is empty or has blanks at its ends, '
                         'line breaks or control characters; no prompt can use it. Give the '
                         'concept a name like "<cat-toy>" (tools/convert_embeddings.py --token).')
    if one_word and ' ' in name:
        raise ValueError(f'{where}: token name {name!r} has spaces; a prompt reads it as several '
                         'words. Give the concept a name like "<cat-toy>".')
    return name


def _rows(name: str, value: object, path: Path) -> torch.Tensor:
    if isinstance(value, torch.nn.Parameter):
        value = value.data
    if not isinstance(value, torch.Tensor):
        kind = 'a numpy array' if type(value).__module__ == 'numpy' else f'a {type(value).__name__}'
        raise ValueError(f'{path}: entry {name!r} is {kind}, not a tensor; not a known '
                         f'embedding layout ({KNOWN_LAYOUTS}).')
    if not value.is_floating_point():
        raise ValueError(f'{path}: entry {name!r} holds {value.dtype} values; embedding rows '
                         'are floating point.')
    if value.ndim == 1:  # a single vector, as some tools write it
        value = value[None]
    if value.ndim != 2 or value.shape[0] == 0:
        raise ValueError(f'{path}: entry {name!r} has shape {tuple(value.shape)}; expected '
                         '[num_vectors, dim].')
    value = value.detach().float().contiguous()
    check_finite(name, value, path)
    return value


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _resolve_folder(path: Path) -> Path:
    found = [path / name for name in FOLDER_FILES if (path / name).is_file()]
    if not found:
        raise FileNotFoundError(f'{path} is a folder without {" or ".join(FOLDER_FILES)}.')
    return found[0]


def read_embedding_file(path: str | os.PathLike, token: str | None = None) -> EmbeddingFile:
    """Read any supported embedding file (or a folder in diffusers layout).

    Args:
        path: The file, or a folder holding ``learned_embeds.safetensors``.
        token: Name for the concept in layouts that store rows without one
            (A1111, ``emb_params``, SDXL). Defaults to the name the file
            records, else the file name without extension.
    """
    path = Path(path)
    if path.is_dir():
        path = _resolve_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f'Embedding file {path} does not exist.')
    if token is not None:
        check_token_name(token, f'{path} (renamed)')
    metadata: dict[str, str] = {}
    if is_png(path):
        data = read_png_embedding(path)
        # A1111 names a PNG's concept by its 'name' field, as in its .pt files.
        metadata = {k: str(data[k]) for k in ('name', 'step')
                    if isinstance(data.get(k), (str, int)) and not isinstance(data.get(k), bool)}
    elif _is_safetensors(path):
        data, metadata = _read_safetensors(path)
    else:
        data = _load_pickle_safely(path)
    return _contents(data, path, token, metadata)


def _contents(data: object, path: Path, token: str | None,
              metadata: dict[str, str]) -> EmbeddingFile:
    """Tell the layout of a loaded dict apart and check its rows."""
    if not isinstance(data, dict) or not data:
        raise ValueError(f'{path} holds no embeddings (expected e.g. {{"<token>": tensor[n, dim]}}).')
    step = _int_or_none(metadata.get('step'))
    default_name = token or metadata.get('token') or metadata.get('name') or path.stem

    if 'string_to_param' in data:
        params = data['string_to_param']
        if not isinstance(params, dict) or len(params) != 1:
            raise ValueError(f'{path}: an A1111 file needs exactly one entry in string_to_param.')
        name = token or (data.get('name') if isinstance(data.get('name'), str) else None) or path.stem
        check_token_name(name, path)
        rows = _rows(name, next(iter(params.values())), path)
        return EmbeddingFile({name: rows}, format='a1111', step=_int_or_none(data.get('step')))
    if 'clip_l' in data or 'clip_g' in data:
        if not ('clip_l' in data and 'clip_g' in data):
            raise ValueError(f'{path}: an SDXL file needs both clip_l and clip_g rows.')
        check_token_name(default_name, path)
        rows_l, rows_g = _rows('clip_l', data['clip_l'], path), _rows('clip_g', data['clip_g'], path)
        if rows_l.shape[0] != rows_g.shape[0]:
            raise ValueError(f'{path}: clip_l has {rows_l.shape[0]} vectors but clip_g '
                             f'{rows_g.shape[0]}; they must match.')
        return EmbeddingFile({default_name: rows_l}, {default_name: rows_g}, 'sdxl', step)
    if 'emb_params' in data:
        check_token_name(default_name, path)
        return EmbeddingFile({default_name: _rows('emb_params', data['emb_params'], path)},
                             format='safetensors', step=step)
    embeddings = {check_token_name(k, path): _rows(k, v, path) for k, v in data.items()}
    if token is not None:
        if len(embeddings) != 1:
            raise ValueError(f'{path} holds {list(embeddings)}; a new token name can only be '
                             'given for a file with one concept.')
        embeddings = {token: next(iter(embeddings.values()))}
    return EmbeddingFile(embeddings, format='diffusers', step=step)


def second_file(path: str | os.PathLike) -> Path:
    """Where diffusers puts an SDXL embedding's clip_g rows: ``<stem>_2<ext>``
    beside the first file, or ``learned_embeds_2.safetensors`` in a folder."""
    path = Path(path)
    if path.is_dir():
        return path / 'learned_embeds_2.safetensors'
    return path.with_name(f'{path.stem}_2{path.suffix}')


def read_embedding_pair(path: str | os.PathLike, token: str | None = None) -> EmbeddingFile:
    """Like :func:`read_embedding_file`, and when the file (or folder) is the
    first of diffusers' SDXL pair, with the second file's rows as
    ``embeddings_2``. A file with one encoder's rows is returned as it is
    unless the ``_2`` file beside it holds the second encoder's rows of the
    same concepts (judged on the files' own names: ``token`` renames after)."""
    contents = read_embedding_file(path, token=token)
    pair = second_file(path)
    if contents.embeddings_2 or not pair.is_file():
        return contents
    try:
        own = contents if token is None else read_embedding_file(path)
        second = read_embedding_file(pair)
    except ValueError:  # not an embedding file at all: not our second half
        return contents
    if not is_second_encoder_half(own, second):
        return contents
    if token is not None:
        second = read_embedding_file(pair, token=token)
    return EmbeddingFile(contents.embeddings, second.embeddings, contents.format, contents.step)


def first_file_of_pair(path: str | os.PathLike) -> Path | None:
    """The first file of the SDXL pair whose second (clip_g) half ``path``
    is, or None. Loading the ``_2`` file alone is a natural mistake; the
    first file reads it from beside itself."""
    path = Path(path)
    if path.is_dir() or not path.stem.endswith('_2'):
        return None
    first = path.with_name(f'{path.stem[:-2]}{path.suffix}')
    if not first.is_file():
        return None
    try:
        contents, first_contents = read_embedding_file(path), read_embedding_file(first)
    except ValueError:
        return None
    if contents.embeddings_2 or not is_second_encoder_half(first_contents, contents):
        return None
    return first


def clip_g_half_problem(path: str | os.PathLike, verb: str = 'load',
                        where: str = ' (with an SDXL model)') -> str | None:
    """What to say when ``path`` is the clip_g half of an SDXL pair given on
    its own, or None: ``{verb} <first file>{where}``, which reads it."""
    first = first_file_of_pair(path)
    if first is None:
        return None
    name = Path(path).name
    return (f'{path} is the clip_g half of the SDXL embedding {first.name} + {name}; '
            f'{verb} {first}{where}, which reads {name} from beside it')


def is_second_encoder_half(first: EmbeddingFile, second: EmbeddingFile) -> bool:
    """Whether ``second`` holds SDXL's clip_g rows for the concepts of ``first``.

    The name ``<stem>_2`` alone is not enough: A1111 folders hold unrelated
    embeddings named ``style`` and ``style_2``. Only diffusers writes SDXL
    embeddings as two files (A1111's and kohya's keep both encoders in one),
    and the second encoder of every two-encoder model mmti knows (SDXL's
    OpenCLIP bigG beside CLIP L) is the wider one, so the second half is a
    diffusers file like the first, with the same concepts, the same row
    counts and wider rows.
    """
    if first.format != 'diffusers' or second.format != 'diffusers':
        return False
    if second.embeddings_2 or list(second.embeddings) != list(first.embeddings):
        return False
    return all(second.embeddings[name].shape[0] == rows.shape[0]
               and second.embeddings[name].shape[1] > rows.shape[1]
               for name, rows in first.embeddings.items())


def describe_rows(contents: EmbeddingFile) -> str:
    """'768+1280 (SDXL clip_l + clip_g)' or '768 (SD 1.x ...)': what a file is for."""
    first = next(iter(contents.embeddings.values())).shape[1]
    if contents.embeddings_2:
        second = next(iter(contents.embeddings_2.values())).shape[1]
        return f'{first}+{second} (SDXL clip_l + clip_g)'
    return describe_dim(first)


# ------------------------------------------------------------------- writing
def _metadata(fmt: str, token: str, rows: torch.Tensor, step: int | None,
              extra: dict[str, str] | None) -> dict[str, str]:
    meta = {'format': fmt, 'token': token, 'num_vectors': str(rows.shape[0]),
            'dim': str(rows.shape[1])}
    if step is not None:
        meta['step'] = str(step)
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    return meta


def _single(embeddings: dict[str, torch.Tensor], fmt: str) -> tuple[str, torch.Tensor]:
    if len(embeddings) != 1:
        raise ValueError(f'The {fmt} format holds one concept per file; got {list(embeddings)}. '
                         'Write one file per token.')
    return next(iter(embeddings.items()))


def write_embedding_file(path: str | os.PathLike,
                         embeddings: dict[str, torch.Tensor],
                         format: str = 'diffusers',
                         embeddings_2: dict[str, torch.Tensor] | None = None,
                         step: int | None = None,
                         metadata: dict[str, str] | None = None) -> Path:
    """Write embeddings in one of :data:`FORMATS`, atomically.

    The token, number of vectors and step are recorded where the layout has
    room for them (safetensors metadata; A1111's ``name``/``step`` fields).
    A ``diffusers`` file whose name ends in ``.bin`` is written with
    ``torch.save`` (tensors only), anything else as safetensors.
    """
    if format not in FORMATS:
        raise ValueError(f'Unknown embedding format {format!r}; use one of {", ".join(FORMATS)}.')
    path = Path(path)
    check_layout_suffix(path, format)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in embeddings.items()}
    if not tensors:
        raise ValueError('No embeddings to write.')
    for name, rows in [*tensors.items(), *(embeddings_2 or {}).items()]:
        check_token_name(name, path)
        check_finite(name, rows, path)
    with atomic_write(path) as tmp:
        if format == 'diffusers':
            token, rows = next(iter(tensors.items()))
            if path.suffix == '.bin':
                _save_torch(tensors, tmp)
            else:
                meta = _metadata('diffusers', ','.join(tensors), rows, step, metadata)
                meta['num_vectors'] = ','.join(str(v.shape[0]) for v in tensors.values())
                _save_safetensors(tensors, tmp, meta)
        elif format == 'a1111':
            token, rows = _single(tensors, 'a1111')
            _save_torch({'string_to_token': {'*': A1111_STAR_TOKEN_ID},
                        'string_to_param': {'*': rows},
                        'name': token,
                        'step': int(step or 0),
                        'sd_checkpoint': None,
                        'sd_checkpoint_name': str((metadata or {}).get('base_model', ''))}, tmp)
        elif format == 'safetensors':
            token, rows = _single(tensors, 'safetensors')
            _save_safetensors({'emb_params': rows}, tmp,
                              _metadata('safetensors', token, rows, step, metadata))
        else:  # sdxl
            token, rows = _single(tensors, 'sdxl')
            second = {k: v.detach().float().cpu().contiguous() for k, v in (embeddings_2 or {}).items()}
            if token not in second:
                raise ValueError(f'The sdxl format needs clip_g rows for {token!r} as well '
                                 '(embeddings_2); this embedding has only one text encoder.')
            if second[token].shape[0] != rows.shape[0]:
                raise ValueError(f'clip_l has {rows.shape[0]} vectors but clip_g '
                                 f'{second[token].shape[0]}; they must match.')
            _save_safetensors({'clip_l': rows, 'clip_g': second[token]}, tmp,
                              _metadata('sdxl', token, rows, step, metadata))
    return path


def _save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """safetensors with its JSON header in sorted key order.

    safetensors serialises the metadata from a hash map whose order changes
    from process to process, so two identical runs would write files with
    different bytes (and sha256). The header is re-written sorted and padded
    as the format allows (spaces up to a multiple of 8); the tensor bytes and
    offsets are untouched.
    """
    data = safetensors.torch.save(tensors, metadata=metadata)
    length = int.from_bytes(data[:8], 'little')
    header = json.dumps(json.loads(data[8:8 + length]), sort_keys=True, separators=(',', ':'))
    header = header.encode('utf-8')
    header += b' ' * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, 'little') + header + data[8 + length:])


def _save_torch(obj, path: Path) -> None:
    # Through a buffer: torch.save names the zip's inner folder after the
    # file, and the temporary name differs on every write.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    path.write_bytes(buffer.getvalue())
