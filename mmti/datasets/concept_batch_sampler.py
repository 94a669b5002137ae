"""Batches of many concepts at once: a queue of concepts over a few lanes."""
import itertools
from collections.abc import Iterator

from mmengine.dist import get_dist_info

from mmti.registry import DATA_SAMPLERS
from .concept_specs import concept_seed
from .seeded_infinite_sampler import SeededInfiniteSampler

WAITING, TRAINING, DONE = 'waiting', 'training', 'done'


class ConceptQueue:
    """Which concepts train now (one per lane), which wait, which are done,
    and how many steps each has trained.

    A finished concept's lane goes to the next waiting concept in list
    order; with nobody waiting the lane stays empty and batches get smaller.
    Lanes are never handed to concepts already training: that would change
    their batch size, and so their recipe, halfway through.

    Args:
        num_concepts: Concepts in the list.
        lanes: Concepts trained at once.
    """

    def __init__(self, num_concepts: int, lanes: int):
        if lanes < 1:
            raise ValueError(f'concepts_per_batch must be >= 1, got {lanes}.')
        self.status = [WAITING] * num_concepts
        self.steps = [0] * num_concepts
        self.lanes: list[int | None] = [None] * min(lanes, num_concepts)
        self.admit()

    def training(self) -> list[int]:
        """Concepts training now, in lane order (the order of the batch)."""
        return [c for c in self.lanes if c is not None]

    @property
    def done(self) -> bool:
        return all(s == DONE for s in self.status)

    def admit(self) -> list[int]:
        """Fill empty lanes with waiting concepts; returns the ones admitted."""
        admitted = []
        waiting = (c for c, s in enumerate(self.status) if s == WAITING)
        for lane, concept in enumerate(self.lanes):
            if concept is None:
                nxt = next(waiting, None)
                if nxt is None:
                    break
                self.lanes[lane] = nxt
                self.status[nxt] = TRAINING
                admitted.append(nxt)
        return admitted

    def advance(self) -> None:
        """One step trained by every concept in a lane."""
        for concept in self.training():
            self.steps[concept] += 1

    def finish(self, concept: int) -> None:
        if self.status[concept] != TRAINING:
            raise ValueError(f'Concept {concept} is not training ({self.status[concept]}).')
        self.status[concept] = DONE
        self.lanes[self.lanes.index(concept)] = None

    def most_steps_left(self, max_steps: int) -> int:
        """Run steps until every concept is done if none stops before ``max_steps``."""
        free_at = sorted(max(0, max_steps - self.steps[c]) if c is not None else 0
                         for c in self.lanes)
        for _ in (c for c, s in enumerate(self.status) if s == WAITING):
            free_at[0] += max_steps  # the next waiting concept takes the lane freed first
            free_at.sort()
        return free_at[-1] if free_at else 0

    def state(self) -> dict:
        return {'status': list(self.status), 'steps': list(self.steps), 'lanes': list(self.lanes)}

    def load_state(self, state: dict) -> None:
        if len(state['status']) != len(self.status) or len(state['lanes']) != len(self.lanes):
            raise ValueError(f'The checkpoint queues {len(state["status"])} concepts over '
                             f'{len(state["lanes"])} lanes; this config {len(self.status)} over '
                             f'{len(self.lanes)}. Resume with the config it was trained with.')
        self.status, self.steps = list(state['status']), list(state['steps'])
        self.lanes = list(state['lanes'])


@DATA_SAMPLERS.register_module()
class ConceptBatchSampler:
    """Each step, ``batch_size`` samples of every concept in a lane.

    Used as ``train_dataloader.batch_sampler`` over a
    :class:`~mmti.datasets.ConceptListDataset`; ``train_dataloader.batch_size``
    is then the batch of *each* concept (the single-concept recipe's), and
    a step holds up to ``concepts_per_batch`` times that. Each concept draws
    its samples from its own endless stream (a :class:`SeededInfiniteSampler`
    keyed by the run's sampler seed and its token), advanced only by the
    steps it trains, so its sample sequence is the one it would have alone.

    Which concepts train is the :class:`ConceptQueue`'s state, read at each
    step; ``ConceptQueueHook`` advances it and checkpoints it, which is all
    a resume needs (:meth:`seek` has nothing to do). With ``N`` processes
    each takes every ``N``-th sample of each concept's share, so together
    they hold the one-process batch.

    Args:
        sampler: The dataloader's sampler (a ``SeededInfiniteSampler`` over
            the concept list); gives the dataset, seed and shuffling.
        batch_size: Samples of each concept per step (all processes together).
        concepts_per_batch: Concepts trained at once; None trains all at once.
    """

    def __init__(self, sampler, batch_size: int, concepts_per_batch: int | None = None):
        dataset = getattr(sampler, 'dataset', None)
        if not hasattr(dataset, 'datasets'):
            raise ValueError('ConceptBatchSampler needs train_dataloader.dataset of type '
                             "ConceptListDataset and sampler=dict(type='SeededInfiniteSampler').")
        rank, world_size = get_dist_info()
        if batch_size % world_size:
            raise ValueError(f'train_dataloader.batch_size={batch_size} (each concept\'s batch) '
                             f'must be a multiple of the {world_size} processes, so each gets '
                             'the same share of every concept.')
        self.sampler = sampler  # mmengine's DistSamplerSeedHook looks for it
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.streams = [SeededInfiniteSampler(d, shuffle=sampler.shuffle,
                                              seed=concept_seed(sampler.seed, d.placeholder_token))
                        for d in dataset.datasets]
        self.queue = ConceptQueue(len(self.streams), concepts_per_batch or len(self.streams))
        self._cursors: dict[int, tuple[int, Iterator[int]]] = {}
        self._drawn_at: dict | None = None  # the queue when the last batch was drawn

    def seek(self, consumed: int) -> None:
        """Nothing to do: where each concept's stream stands is the queue's
        state (its steps), restored from the checkpoint."""

    def _take(self, concept: int) -> list[int]:
        start = self.queue.steps[concept] * self.batch_size
        position, stream = self._cursors.get(concept, (None, None))
        if position != start:  # first use, or after a resume: skip ahead once
            stream = itertools.islice(self.streams[concept].global_stream(), start, None)
        taken = list(itertools.islice(stream, self.batch_size))
        self._cursors[concept] = (start + self.batch_size, stream)
        return taken[self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        while not self.queue.done:
            # Each batch is decided by the queue after the previous step. A
            # queue that has not moved means no ConceptQueueHook advances it,
            # or DataLoader workers draw batches ahead: either way every step
            # would repeat the same samples and finished concepts would train on.
            if self.queue.state() == self._drawn_at:
                raise ValueError(
                    'ConceptBatchSampler was asked for a batch before the concept queue moved: '
                    'it needs ConceptQueueHook in default_hooks.concept_queue (which advances '
                    'the queue after each step) and train_dataloader.num_workers=0 (workers '
                    'draw batches ahead of the queue).')
            self._drawn_at = self.queue.state()
            yield [(c, i) for c in self.queue.training() for i in self._take(c)]

    def __len__(self) -> int:
        return len(self.streams[0]) if self.streams else 0
