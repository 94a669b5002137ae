"""The concept list of a many-concept config: one entry per concept.

A many-concept config declares its concepts once, at the top::

    concepts = [
        dict(placeholder_token='<red-mug>', initializer_token='mug',
             data_root='data/red_mug'),
        dict(placeholder_token='<my-style>', initializer_token='painting',
             data_root='data/my_style', learnable_property='style', num_vectors=2),
    ]

The model takes the keys that say what a concept's rows start from, the
dataset the keys that say what it is learned from; both get the same list.

Or a folder of concepts, ``concepts = 'data/products'``: each sub-folder is
one concept, named after it (``data/products/red-mug/`` is ``<red-mug>``),
with its images and a ``concept.json`` giving the rest of its keys
(``{"initializer_token": "mug"}``; ``data_root`` and ``held_out_dir`` there
are relative to the sub-folder, ``data_root`` defaults to the sub-folder).
"""
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

#: Keys the model reads: the token and where its rows start.
MODEL_KEYS = ('placeholder_token', 'initializer_token', 'initial_embedding',
              'initial_embedding_token', 'num_vectors')
#: Keys the dataset reads: the images and their captions.
DATA_KEYS = ('data_root', 'learnable_property', 'templates', 'caption_files')
#: Keys of the optional per-concept evaluation (tools/evaluate.py's held-out images).
EVALUATION_KEYS = ('held_out_dir',)
ALL_KEYS = ('placeholder_token',) + MODEL_KEYS[1:] + DATA_KEYS + EVALUATION_KEYS


CONCEPT_FILE = 'concept.json'


def concepts_in_folder(root: str | os.PathLike) -> list[dict]:
    """One concept per sub-folder of ``root``, from its ``concept.json``."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f'concepts={str(root)!r} is not a folder; give a folder with one '
                         'sub-folder per concept, or a list of dicts.')
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith('.'))
    if not folders:
        raise ValueError(f'{root} has no sub-folders; put each concept\'s images in '
                         f'{root}/<name>/ with a {CONCEPT_FILE}.')
    concepts = []
    for folder in folders:
        path = folder / CONCEPT_FILE
        try:
            entry = json.loads(path.read_text(encoding='utf-8'))
        except FileNotFoundError:
            raise ValueError(f'{path} is missing; write one, e.g. {{"initializer_token": "mug"}} '
                             '(one word the concept starts from).') from None
        except (UnicodeDecodeError, ValueError) as err:
            raise ValueError(f'{path} is not valid JSON ({err}); write one object, e.g. '
                             '{"initializer_token": "mug"}.') from None
        if not isinstance(entry, dict):
            raise ValueError(f'{path} holds a {type(entry).__name__}; write one object, e.g. '
                             '{"initializer_token": "mug"}.')
        if 'placeholder_token' not in entry and any(c.isspace() for c in folder.name):
            raise ValueError(f'{folder} names the concept\'s word, which cannot hold spaces; '
                             f'rename the folder (e.g. {"-".join(folder.name.split())}) or set '
                             f'"placeholder_token" in its {CONCEPT_FILE}.')
        entry.setdefault('placeholder_token', f'<{folder.name}>')
        for key in ('data_root', 'held_out_dir'):
            if isinstance(entry.get(key), str):
                entry[key] = str(folder / entry[key])
        entry.setdefault('data_root', str(folder))
        concepts.append(entry)
    return concepts


def check_concept_list(concepts, where: str = 'concepts') -> list[dict]:
    """The list as plain dicts (a folder read with :func:`concepts_in_folder`),
    or one error naming the entry and the fix."""
    if isinstance(concepts, (str, os.PathLike)):
        concepts = concepts_in_folder(concepts)
    if isinstance(concepts, (str, Mapping)) or not isinstance(concepts, Sequence) or not concepts:
        raise ValueError(f'{where} must be a non-empty list of dicts, one per concept '
                         "(dict(placeholder_token='<red-mug>', initializer_token='mug', "
                         f"data_root='data/red_mug')), got {concepts!r}.")
    checked, seen = [], {}
    for position, entry in enumerate(concepts):
        here = f'{where}[{position}]'
        if not isinstance(entry, Mapping):
            raise ValueError(f'{here} is a {type(entry).__name__}; each concept is a dict.')
        entry = dict(entry)
        unknown = [k for k in entry if k not in ALL_KEYS]
        if unknown:
            raise ValueError(f'{here} has unknown key {unknown[0]!r}; a concept takes '
                             f'{", ".join(ALL_KEYS)}.')
        token = entry.get('placeholder_token')
        if not isinstance(token, str) or not token.strip():
            raise ValueError(f"{here} needs placeholder_token, the new word (e.g. '<red-mug>').")
        if token in seen:
            raise ValueError(f'{here} and {where}[{seen[token]}] both use placeholder_token '
                             f'{token!r}; give each concept its own word.')
        seen[token] = position
        checked.append(entry)
    folders = {}
    for entry in checked:
        folder = concept_folder_name(entry['placeholder_token'])
        if folder in folders:
            raise ValueError(f'{folders[folder]!r} and {entry["placeholder_token"]!r} would share '
                             f'the output folder concepts/{folder}; rename one.')
        folders[folder] = entry['placeholder_token']
    return checked


def concept_seed(seed: int, token: str) -> int:
    """A concept's own seed: a function of the run seed and its token alone,
    so a concept draws the same samples wherever it stands in the list and
    whatever else is trained beside it."""
    digest = int.from_bytes(hashlib.sha256(token.encode('utf-8')).digest()[:8], 'little')
    return int(np.random.SeedSequence([int(seed) % 2**63, digest]).generate_state(2, np.uint64)[0]
               % 2**63)


def concept_folder_name(token: str) -> str:
    """``'<red-mug>'`` -> ``'red-mug'``: the concept's output folder."""
    name = re.sub(r'[^A-Za-z0-9._-]+', '_', token.strip('<>')).strip('._') or 'concept'
    return name
