"""Embedding files in and out of a model's concept vocabulary.

Reading any layout (:mod:`mmti.fileio.embedding_file`), checking it and
applying it all-or-nothing is the vocabulary's job; this mixin gives the
model its user-facing methods: ``load_embeddings``, ``save_embeddings``,
``unload_embeddings``, ``get_embeddings``, and the pre-training check that
the captions can train every trainable row.
"""
from collections.abc import Sequence
from pathlib import Path

import torch

from mmti.fileio import layout_for, write_embedding_file
from .concept_sources import read_concepts, second_file


class ConceptFilesMixin:
    """Embedding I/O for :class:`~mmti.models.TextualInversion` (uses ``self.vocabulary``)."""

    def _initial_rows(self, path: str, token: str | None, num_vectors: int,
                      placeholder_token: str) -> list[torch.Tensor]:
        concepts, origin = read_concepts(path, None, self.TEXT_SLOTS, self.vocabulary.dims)
        if token is None:
            token = (placeholder_token if placeholder_token in concepts
                     else next(iter(concepts)) if len(concepts) == 1 else None)
        if token not in concepts:
            raise ValueError(f'initial_embedding {origin} holds {list(concepts)}; set '
                             'initial_embedding_token to the one to start from.')
        rows = concepts[token]
        found = rows[0].shape[0] if rows[0].ndim == 2 else 1
        if found != num_vectors:
            raise ValueError(f'initial_embedding {origin} has {found} vector(s) for {token!r} but '
                             f'num_vectors={num_vectors}; set num_vectors={found}.')
        return rows

    def check_training_captions(self, captions: Sequence[str],
                                source: str = 'train_dataloader.dataset') -> None:
        """Refuse, before step 1, captions that cannot train every trainable row.

        Each caption must contain every trainable placeholder id (otherwise
        those rows get no gradient and the run silently saves its
        initialisation) and, placeholders expanded, fit the text encoder
        (otherwise the last vectors and the end-of-text token are cut).

        Args:
            captions: Every distinct caption the dataset produces.
            source: Config field the captions come from, for the message.
        """
        for slot, (tokenizer, table) in enumerate(self._text_encoders()):
            rows = {name: list(table.concept_id_range(name)) for name in table.trainable_concepts()}
            limit = tokenizer.model_max_length
            longest, longest_caption, trained = 0, '', set()
            for caption in captions:
                ids = tokenizer(self.expand_prompt(caption), truncation=False, verbose=False)['input_ids']
                mentioned = [name for name, own in rows.items() if any(i in ids for i in own)]
                missing = [i for name in (mentioned or list(rows)[:1]) for i in rows[name]
                           if i not in ids]
                if missing:
                    owner = next(name for name, own in rows.items() if missing[0] in own)
                    fix = ('Declare the token once, at the top of the config (placeholder_token = '
                           '...), so model and dataset use the same one.' if len(rows) == 1 else
                           f'Write {owner} whole in the templates of its concept ({{}} in a '
                           'template stands for all of its vectors).')
                    raise ValueError(
                        f'{source} caption {caption!r} does not contain the trainable placeholder '
                        f'{tokenizer.convert_ids_to_tokens(missing)[0]!r} '
                        f'(model.placeholder_token={owner!r}); those rows would never be '
                        f'trained. {fix}')
                trained.update(mentioned)
                if len(ids) > longest:
                    longest, longest_caption = len(ids), caption
            untrained = [name for name in rows if name not in trained]
            if untrained:
                raise ValueError(f'No {source} caption contains {untrained[0]!r}; its rows would '
                                 'never be trained. Give it images (a concept in the dataset\'s '
                                 'concepts list with the same placeholder_token).')
            if longest > limit:
                vectors = max((len(own) for own in rows.values()), default=0)
                raise ValueError(
                    f'{source} caption {longest_caption!r} is {longest} tokens with the placeholder '
                    f'expanded to {vectors} vectors, but the text encoder reads {limit}; the '
                    'end would be cut. Lower model.num_vectors or shorten the templates.')

    def get_embeddings(self, tokens: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """``{token: rows[n, dim]}`` (fp32 copies) of the first text encoder."""
        return self.get_slot_embeddings(tokens)[0]

    def get_slot_embeddings(self, tokens: Sequence[str] | None = None) -> list[dict[str, torch.Tensor]]:
        """One ``{token: rows}`` dict (fp32 copies) per text encoder."""
        tokens = self.concepts if tokens is None else list(tokens)
        unknown = [t for t in tokens if t not in self.concepts]
        if unknown:
            raise KeyError(f'No embedding for {unknown}; this model has {self.concepts}.')
        rows = {t: self.vocabulary.rows(t) for t in tokens}
        return [{t: rows[t][slot].detach().float().cpu().clone() for t in tokens}
                for slot in range(len(self.TEXT_SLOTS))]

    def save_embeddings(self, path: str, tokens: Sequence[str] | None = None,
                        step: int | None = None, format: str | None = None) -> str:
        """Write learned rows to a file other tools load (atomically).

        Args:
            path: Output file.
            tokens: Concepts to save; defaults to the trained placeholder(s).
            step: Training step, recorded in the file.
            format: 'diffusers' (``{"<tok>": tensor[n, dim]}``; for SDXL the
                ``learned_embeds.safetensors`` + ``_2`` pair), 'a1111' (``.pt``),
                'safetensors' (``{"emb_params": ...}``) or, SDXL only, 'sdxl'
                (``{"clip_l", "clip_g"}``, its default). By default the one the
                name asks for: 'a1111' for ``.pt``. A name whose ending does not
                fit the format, and non-finite rows, are refused.
        """
        per_slot = self.get_slot_embeddings(self.placeholder_tokens if tokens is None else tokens)
        format = format or layout_for(path, self.DEFAULT_FORMAT)
        if format == 'sdxl' and len(per_slot[0]) > 1 and len(per_slot) == 2:
            format = 'diffusers'  # SDXL's one-file layout holds one concept; the pair holds many
        meta = dict(step=step, metadata={'base_model': str(self.pretrained_model)})
        for slot_name, embeddings in zip(self.TEXT_SLOTS, per_slot):
            for token, rows in embeddings.items():
                if not torch.isfinite(rows).all():
                    raise ValueError(f'Rows of {token!r} ({slot_name}) are not finite; not writing '
                                     f'{path}. Save from an earlier, finite checkpoint.')
        if len(per_slot) == 2 and format in ('a1111', 'safetensors'):
            # A1111's and kohya's layouts hold one text encoder; an A1111 pair
            # of two such files is no SDXL embedding any tool reads.
            raise ValueError(f'{path}: the {format} layout holds one text encoder, so the '
                             f'{self.TEXT_SLOTS[1]} rows would be lost; save as .safetensors with '
                             "format='sdxl' (the one file A1111 and ComfyUI read for SDXL) or "
                             "format='diffusers' (the pair).")
        if len(per_slot) == 2 and format != 'sdxl':
            write_embedding_file(second_file(Path(path)), per_slot[1], format, **meta)
            per_slot = per_slot[:1]
        return str(write_embedding_file(path, per_slot[0], format,
                                        embeddings_2=per_slot[1] if len(per_slot) == 2 else None,
                                        **meta))

    def load_embeddings(self, source, token: str | None = None,
                        replace: bool = False) -> list[str]:
        """Load embeddings from files, folders or dicts; returns the tokens loaded.

        All or nothing: every source is read and checked before the model
        changes, so a bad source leaves the model exactly as it was. Rows for
        the model's own placeholder replace its rows (same shape); a new
        token is added, frozen; a token loaded earlier is refused unless
        ``replace=True``; a word of the base vocabulary is always refused.

        Args:
            source: A file, a folder with ``learned_embeds.*``, a
                ``{token: rows}`` dict (SDXL: ``{token: (clip_l, clip_g)}``),
                or a list of these.
            token: Name for a single-concept source (overrides the file's).
            replace: Allow replacing rows loaded earlier.
        """
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        if token is not None and len(sources) != 1:
            raise ValueError('`token` renames a single source; give one file or dict.')
        concepts, origins = {}, {}
        for item in sources:
            found, origin = read_concepts(item, token, self.TEXT_SLOTS, self.vocabulary.dims)
            twice = [t for t in found if t in concepts]
            if twice:
                raise ValueError(f'Token(s) {twice} are in both {origins[twice[0]]} and {origin}; '
                                 'load one of them, or rename with token=.')
            concepts.update(found)
            origins.update(dict.fromkeys(found, origin))
        replaceable = self.concepts if replace else self.placeholder_tokens
        return self.vocabulary.update(concepts, trainable=False, replaceable=replaceable,
                                      origins=origins)

    def unload_embeddings(self, tokens: Sequence[str] | None = None) -> list[str]:
        """Remove concepts; with no argument, every one (the trained one too).

        The tokenizers and token tables return to exactly their earlier size
        and values: ids of the remaining concepts close up, as if the removed
        ones had never been added.
        """
        return self.vocabulary.remove(self.concepts if tokens is None else tokens)
