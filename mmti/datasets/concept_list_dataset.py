"""The images of many concepts, one :class:`TextualInversionDataset` each."""
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from mmti.registry import DATASETS
from .concept_specs import DATA_KEYS, check_concept_list, concept_seed
from .textual_inversion_dataset import TextualInversionDataset


@DATASETS.register_module()
class ConceptListDataset(Dataset):
    """Every concept of a many-concept config, each its own dataset.

    An index is ``(concept, index)``: sample ``index`` of concept number
    ``concept`` (as :class:`TextualInversionDataset` numbers them, later
    epochs included). Each concept's dataset is seeded from the run seed and
    its token alone (:func:`concept_seed`), so its captions, crops, flips and
    noise seeds are the same whether it trains alone or among others.
    ``ConceptBatchSampler`` decides which concepts a batch holds.

    Args:
        concepts: One dict per concept (see :mod:`.concept_specs`); the
            dataset reads ``placeholder_token``, ``data_root`` and, to
            override the shared settings, ``learnable_property``,
            ``templates`` and ``caption_files``.
        seed: Base of every concept's seed; None takes torch's initial
            seed, which the runner sets from ``randomness.seed``.
        **shared: Settings of every concept's :class:`TextualInversionDataset`
            (``resolution``, ``repeats``, ``flip_prob``, ``caption_files`` ...).
    """

    def __init__(self, concepts: Sequence[dict], seed: int | None = None, **shared):
        self.concepts = check_concept_list(concepts, 'train_dataloader.dataset.concepts')
        for key in ('placeholder_token', 'data_root', 'seed'):
            if key in shared:
                raise ValueError(f'ConceptListDataset takes {key} per concept (in concepts=[...]), '
                                 'not for all of them.')
        base_seed = int(torch.initial_seed() if seed is None else seed)
        self.datasets = []
        for position, entry in enumerate(self.concepts):
            if not entry.get('data_root'):
                raise ValueError(f'concepts[{position}] ({entry["placeholder_token"]}) needs '
                                 'data_root, the folder of its images.')
            own = {k: entry[k] for k in DATA_KEYS if k in entry}
            self.datasets.append(TextualInversionDataset(
                placeholder_token=entry['placeholder_token'], **{**shared, **own},
                seed=concept_seed(base_seed, entry['placeholder_token'])))

    @property
    def tokens(self) -> list[str]:
        return [d.placeholder_token for d in self.datasets]

    @property
    def latent_cacheable(self) -> bool:
        return all(d.latent_cacheable for d in self.datasets)

    @property
    def metainfo(self) -> dict:
        return {'placeholder_tokens': self.tokens,
                'images': [len(d.images) for d in self.datasets],
                'concepts': {d.placeholder_token: d.metainfo for d in self.datasets}}

    def distinct_captions(self) -> list[str]:
        return list(dict.fromkeys(c for d in self.datasets for c in d.distinct_captions()))

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, index) -> dict:
        if not (isinstance(index, (tuple, list)) and len(index) == 2):
            raise IndexError(f'ConceptListDataset is indexed by (concept, index), got {index!r}; '
                             'use it with train_dataloader.batch_sampler='
                             "dict(type='ConceptBatchSampler').")
        concept, local = (int(i) for i in index)
        return self.datasets[concept][local]
