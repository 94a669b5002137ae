"""ConceptQueue and ConceptBatchSampler: who trains in which lane, and which
samples each concept gets, step by step."""
import itertools
import json

import pytest
from mmengine.dataset import pseudo_collate
from torch.utils.data import DataLoader

import mmti.datasets.concept_batch_sampler as batch_sampler_module
from mmti.datasets import (ConceptBatchSampler, ConceptListDataset, ConceptQueue,
                           SeededInfiniteSampler)
from mmti.datasets.concept_specs import concept_seed
from mmti_testing import REPO_ROOT

NAMES = ('purple-dotted-star', 'orange-striped-triangle', 'green-dotted-cross')
SAMPLER_SEED = 9


def toy(name: str) -> dict:
    return dict(placeholder_token=f'<{name}>',
                data_root=str(REPO_ROOT / 'data' / 'toy_concepts' / name / 'train'))


def make_sampler(names=NAMES, batch_size=2, lanes=None, seed=SAMPLER_SEED) -> ConceptBatchSampler:
    dataset = ConceptListDataset([toy(n) for n in names], seed=0, caption_files=True,
                                 resolution=32)
    return ConceptBatchSampler(SeededInfiniteSampler(dataset, seed=seed), batch_size, lanes)


def drive(sampler: ConceptBatchSampler, steps: int, stops: dict[str, int] | None = None,
          batches: list | None = None) -> list[list[tuple[int, int]]]:
    """Draw ``steps`` batches the way ConceptQueueHook runs the queue: after
    each, every concept in a lane has trained a step, the ones that reached
    their stop (``{name: own steps}``) finish, and the lanes are refilled."""
    tokens = sampler.sampler.dataset.tokens
    stops = {tokens.index(f'<{n}>'): s for n, s in (stops or {}).items()}
    batches = [] if batches is None else batches
    iterator = iter(sampler)
    for _ in range(steps):
        batch = next(iterator, None)
        if batch is None:
            break
        batches.append(batch)
        sampler.queue.advance()
        for concept in sampler.queue.training():
            if sampler.queue.steps[concept] == stops.get(concept):
                sampler.queue.finish(concept)
        sampler.queue.admit()
    return batches


def own_indices(batches, concept: int) -> list[list[int]]:
    """Per step in which ``concept`` trained, its sample indices."""
    return [[i for c, i in batch if c == concept] for batch in batches
            if any(c == concept for c, _ in batch)]


def own_stream(name: str, batch_size: int, steps: int, seed=SAMPLER_SEED) -> list[list[int]]:
    """The concept's samples by definition: its own seeded stream, cut into batches."""
    dataset = ConceptListDataset([toy(name)], seed=0, caption_files=True, resolution=32).datasets[0]
    stream = SeededInfiniteSampler(dataset, seed=concept_seed(seed, f'<{name}>')).global_stream()
    return [list(itertools.islice(stream, batch_size)) for _ in range(steps)]


# ------------------------------------------------------------------ the queue
def test_queue_admits_in_list_order_and_hands_a_finished_lane_on():
    queue = ConceptQueue(4, lanes=2)
    assert queue.lanes == [0, 1] and queue.training() == [0, 1]
    assert queue.status == ['training', 'training', 'waiting', 'waiting']
    queue.advance()
    queue.advance()
    assert queue.steps == [2, 2, 0, 0]
    queue.finish(1)
    assert queue.training() == [0] and queue.status[1] == 'done'
    assert queue.admit() == [2]
    assert queue.lanes == [0, 2]  # the next waiting concept takes the freed lane
    queue.advance()
    assert queue.steps == [3, 2, 1, 0]  # a done concept's steps stay where it stopped
    queue.finish(0)
    queue.finish(2)
    assert queue.admit() == [3]  # one waiting, two free lanes: the first lane is filled
    assert queue.lanes == [3, None] and queue.training() == [3]
    assert not queue.done
    queue.finish(3)
    assert queue.admit() == [] and queue.training() == [] and queue.done


def test_queue_never_has_more_lanes_than_concepts_and_refuses_bad_calls():
    assert ConceptQueue(2, lanes=5).lanes == [0, 1]
    with pytest.raises(ValueError, match='concepts_per_batch must be >= 1, got 0'):
        ConceptQueue(3, lanes=0)
    queue = ConceptQueue(3, lanes=1)
    with pytest.raises(ValueError, match=r'Concept 2 is not training \(waiting\)'):
        queue.finish(2)
    queue.finish(0)
    with pytest.raises(ValueError, match=r'Concept 0 is not training \(done\)'):
        queue.finish(0)


def test_queue_state_is_plain_data_and_a_mismatched_one_is_refused():
    queue = ConceptQueue(3, lanes=2)
    queue.advance()
    queue.finish(0)
    queue.admit()
    state = json.loads(json.dumps(queue.state()))  # as written to concepts.json and checkpoints
    restored = ConceptQueue(3, lanes=2)
    restored.load_state(state)
    assert restored.state() == queue.state()
    assert restored.training() == [2, 1]
    with pytest.raises(ValueError, match=r'checkpoint queues 3 concepts over 2 lanes; this '
                                         r'config 3 over 3'):
        ConceptQueue(3, lanes=3).load_state(state)


# --------------------------------------------------------------- the sampler
def test_each_step_holds_batch_size_samples_of_every_concept_in_a_lane():
    sampler = make_sampler(batch_size=2, lanes=2)
    batches = drive(sampler, 9, stops={NAMES[0]: 3, NAMES[1]: 5, NAMES[2]: 4})
    concepts_per_step = [[c for c, _ in batch] for batch in batches]
    assert concepts_per_step[:3] == [[0, 0, 1, 1]] * 3
    # Concept 0 stops after its 3rd step; concept 2 takes its lane (lane order).
    assert concepts_per_step[3:5] == [[2, 2, 1, 1]] * 2
    # Concept 1 stops after its 5th step: nobody waits, so the batch shrinks.
    assert concepts_per_step[5:] == [[2, 2]] * 2
    assert len(batches) == 7  # the sampler ends when the queue is done
    assert sampler.queue.steps == [3, 5, 4]


def test_a_concepts_samples_depend_only_on_its_own_steps():
    # The cross, last in the list, waits 3 steps for a lane, then trains 6 steps.
    among = drive(make_sampler(batch_size=2, lanes=2), 20,
                  stops={NAMES[0]: 3, NAMES[1]: 6, NAMES[2]: 6})
    alone = drive(make_sampler(names=NAMES[2:], batch_size=2), 20, stops={NAMES[2]: 6})
    first_list = drive(make_sampler(names=NAMES[::-1], batch_size=2, lanes=3), 20,
                       stops={n: 6 for n in NAMES})
    expected = own_stream(NAMES[2], 2, 6)
    assert own_indices(among, 2) == own_indices(alone, 0) == own_indices(first_list, 0) == expected
    # The stream moves on every step (12 different samples of one shuffled
    # epoch of 5 images x 100 repeats), not back to its start.
    assert len({i for step in expected for i in step}) == 12
    # The star's stream is its own, not the cross's.
    assert own_indices(among, 0) == own_stream(NAMES[0], 2, 3) != expected[:3]


def test_the_sampler_seed_changes_every_concepts_stream():
    one = drive(make_sampler(seed=1, lanes=3), 2)
    two = drive(make_sampler(seed=2, lanes=3), 2)
    for concept in range(3):
        assert own_indices(one, concept) != own_indices(two, concept)


def test_queue_state_round_trip_reproduces_the_next_batches():
    stops = {NAMES[0]: 2, NAMES[1]: 4, NAMES[2]: 5}
    whole = drive(make_sampler(lanes=2), 12, stops)
    first = make_sampler(lanes=2)
    head = drive(first, 2, stops)  # the star has just finished; the cross took its lane
    state = json.loads(json.dumps(first.queue.state()))
    assert state['lanes'] == [2, 1] and state['status'] == ['done', 'training', 'training']
    resumed = make_sampler(lanes=2)
    resumed.queue.load_state(state)
    resumed.seek(123)  # the loop's seek must not move anything: the queue holds the place
    assert head + drive(resumed, 12, stops) == whole


def test_two_processes_together_draw_the_one_process_batch(monkeypatch):
    stops = {NAMES[0]: 2, NAMES[1]: 3, NAMES[2]: 3}
    single = drive(make_sampler(batch_size=4, lanes=2), 10, stops)
    ranks = []
    for rank in range(2):
        monkeypatch.setattr(batch_sampler_module, 'get_dist_info', lambda rank=rank: (rank, 2))
        ranks.append(drive(make_sampler(batch_size=4, lanes=2), 10, stops))
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 5
    for step, whole in enumerate(single):
        parts = [ranks[0][step], ranks[1][step]]
        for concept in {c for c, _ in whole}:
            shares = [[i for c, i in part if c == concept] for part in parts]
            assert [len(s) for s in shares] == [2, 2]  # each process: half of every concept
            assert sorted(shares[0] + shares[1]) == sorted(i for c, i in whole if c == concept)


def test_batch_size_must_split_evenly_over_processes(monkeypatch):
    monkeypatch.setattr(batch_sampler_module, 'get_dist_info', lambda: (0, 2))
    with pytest.raises(ValueError, match=r"batch_size=3 \(each concept's batch\) must be a "
                                         r'multiple of the 2 processes'):
        make_sampler(batch_size=3)


def test_it_needs_a_concept_list_dataset():
    with pytest.raises(ValueError, match='ConceptBatchSampler needs train_dataloader.dataset of '
                                         'type ConceptListDataset'):
        ConceptBatchSampler(SeededInfiniteSampler(range(10), seed=0), batch_size=2)


QUEUE_NOT_MOVED = (r'ConceptBatchSampler was asked for a batch before the concept queue moved: '
                   r'it needs ConceptQueueHook in default_hooks\.concept_queue .* and '
                   r'train_dataloader\.num_workers=0')


def test_a_batch_before_the_queue_moved_is_refused():
    # Without ConceptQueueHook nothing advances the queue: every step would
    # train on the same samples, for ever.
    sampler = make_sampler(lanes=2)
    batches = iter(sampler)
    first = next(batches)
    with pytest.raises(ValueError, match=QUEUE_NOT_MOVED):
        next(batches)
    sampler.queue.advance()  # what the hook does after each step
    assert next(iter(sampler)) != first


def test_dataloader_workers_drawing_ahead_are_refused():
    # Workers fetch batches ahead of training, from a queue that has not yet
    # seen the steps before them: a finished concept would keep training.
    sampler = make_sampler(lanes=1)
    loader = DataLoader(sampler.sampler.dataset, batch_sampler=sampler, num_workers=2,
                        collate_fn=pseudo_collate)
    with pytest.raises(ValueError, match=QUEUE_NOT_MOVED):
        next(iter(loader))
    # Without workers the same loader follows the queue step by step.
    sampler = make_sampler(lanes=1, names=NAMES[:2])
    loader = DataLoader(sampler.sampler.dataset, batch_sampler=sampler, num_workers=0,
                        collate_fn=pseudo_collate)
    concepts = []
    for batch in itertools.islice(loader, 4):
        concepts.append(batch['concepts'])
        sampler.queue.advance()
        if sampler.queue.steps[0] == 2 and sampler.queue.status[0] == 'training':
            sampler.queue.finish(0)
            sampler.queue.admit()
    star, triangle = (f'<{n}>' for n in NAMES[:2])
    assert concepts == [[star, star]] * 2 + [[triangle, triangle]] * 2
