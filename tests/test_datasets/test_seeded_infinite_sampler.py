"""SeededInfiniteSampler: endless, seeded, epoch-tagged, shardable index stream."""
import itertools

import pytest
import torch

from mmti.datasets import SeededInfiniteSampler
from mmti.registry import DATA_SAMPLERS


def take(sampler, n, start=0):
    return list(itertools.islice(iter(sampler), start, start + n))


@pytest.fixture(autouse=True)
def _no_distributed():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        pytest.skip('these tests assume a single, non-distributed process')


def test_single_process_rank_and_world_size():
    s = SeededInfiniteSampler(range(5), seed=0)
    assert (s.rank, s.world_size) == (0, 1)
    assert len(s) == 5


@pytest.mark.parametrize('size', [1, 2, 7, 30])
def test_each_epoch_is_an_offset_permutation(size):
    s = SeededInfiniteSampler(range(size), seed=3)
    epochs = 6
    stream = take(s, epochs * size)
    for epoch in range(epochs):
        block = stream[epoch * size:(epoch + 1) * size]
        assert sorted(block) == list(range(epoch * size, (epoch + 1) * size))


def test_stream_is_infinite_and_keeps_counting():
    s = SeededInfiniteSampler(range(4), seed=0)
    far = take(s, 4, start=4 * 1000)
    assert sorted(far) == [4000, 4001, 4002, 4003]


def test_shuffle_actually_shuffles_and_epochs_differ():
    size = 20
    stream = take(SeededInfiniteSampler(range(size), seed=0), 4 * size)
    first = stream[:size]
    assert first != list(range(size))
    relative = [[i - e * size for i in stream[e * size:(e + 1) * size]] for e in range(4)]
    assert len({tuple(r) for r in relative}) == 4  # a fresh order every epoch


def test_same_seed_same_stream():
    a = take(SeededInfiniteSampler(range(11), seed=123), 55)
    b = take(SeededInfiniteSampler(range(11), seed=123), 55)
    assert a == b


def test_different_seed_different_stream():
    a = take(SeededInfiniteSampler(range(11), seed=123), 11)
    b = take(SeededInfiniteSampler(range(11), seed=124), 11)
    assert a != b
    assert sorted(a) == sorted(b)


def test_neighbouring_seeds_do_not_share_epoch_orders():
    size = 10
    a = take(SeededInfiniteSampler(range(size), seed=0), 2 * size)
    b = take(SeededInfiniteSampler(range(size), seed=1), size)
    assert [i - size for i in a[size:]] != b


def test_iterating_again_restarts_the_same_stream():
    s = SeededInfiniteSampler(range(9), seed=5)
    assert take(s, 30) == take(s, 30)


def test_shuffle_false_counts_up():
    s = SeededInfiniteSampler(range(4), shuffle=False, seed=0)
    assert take(s, 14) == list(range(14))


def test_seed_none_picks_a_seed_that_reproduces():
    s = SeededInfiniteSampler(range(8))
    assert isinstance(s.seed, int)
    assert take(s, 24) == take(SeededInfiniteSampler(range(8), seed=s.seed), 24)


def _shard(size, seed, rank, world_size):
    s = SeededInfiniteSampler(range(size), seed=seed)
    s.rank, s.world_size = rank, world_size
    return s


@pytest.mark.parametrize('size,batch', [(10, 1), (10, 3), (7, 2), (5, 4)])
def test_two_processes_see_the_one_process_batches(size, batch):
    steps = 12
    single = take(SeededInfiniteSampler(range(size), seed=9), steps * 2 * batch)
    streams = [take(_shard(size, 9, r, 2), steps * batch) for r in (0, 1)]
    assert streams[0] != streams[1]
    for step in range(steps):
        together = (streams[0][step * batch:(step + 1) * batch]
                    + streams[1][step * batch:(step + 1) * batch])
        assert len(set(together)) == 2 * batch
        assert set(together) == set(single[step * 2 * batch:(step + 1) * 2 * batch])


def test_ranks_partition_the_global_stream():
    size, world = 13, 3
    single = take(SeededInfiniteSampler(range(size), seed=2), 3 * size * world)
    ranks = [take(_shard(size, 2, r, world), 3 * size) for r in range(world)]
    interleaved = [x for group in zip(*ranks) for x in group]
    assert interleaved == single
    # no sample is seen by two processes
    assert len(set(interleaved)) == len(interleaved)


def test_build_from_registry():
    s = DATA_SAMPLERS.build(dict(type='SeededInfiniteSampler', seed=4, shuffle=False),
                            default_args=dict(dataset=list('abcdef')))
    assert isinstance(s, SeededInfiniteSampler)
    assert take(s, 8) == list(range(8))


def test_empty_dataset_is_rejected():
    with pytest.raises(ValueError):
        SeededInfiniteSampler([], seed=0)
