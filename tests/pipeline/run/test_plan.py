"""Shard plan: every index exactly once, fixed batches, pure functions of (N, S, B)."""

import itertools
import random

import pytest

from pipeline.run.plan import Shard, iter_shards, num_shards, plan_shards, shard_batches, shard_for


def test_exact_layout_with_short_last_shard():
    assert plan_shards(10, 4) == [Shard(0, 0, 4), Shard(1, 4, 8), Shard(2, 8, 10)]
    assert [s.size for s in plan_shards(10, 4)] == [4, 4, 2]


def test_shard_size_above_num_samples_gives_one_shard():
    assert plan_shards(7, 100) == [Shard(0, 0, 7)]
    assert plan_shards(1, 1) == [Shard(0, 0, 1)]


def test_exact_batches_with_short_last_batch():
    assert shard_batches(Shard(2, 500, 750), 100) == [(500, 600), (600, 700), (700, 750)]
    assert shard_batches(Shard(0, 0, 3), 10) == [(0, 3)]


def test_shard_is_frozen_and_hashable():
    s = Shard(1, 4, 8)
    with pytest.raises(AttributeError):
        s.start = 0  # type: ignore[misc]
    assert {s: 1}[Shard(1, 4, 8)] == 1


def _combos():
    rng = random.Random(0)
    small = list(itertools.product([1, 2, 3, 7, 10, 64, 100], [1, 3, 8, 10, 250], [1, 2, 5, 64, 1000]))
    rand = [(rng.randint(1, 5000), rng.randint(1, 700), rng.randint(1, 300)) for _ in range(200)]
    return small + rand


def test_property_many_combos():
    for n, s, b in _combos():
        _check_plan(n, s, b)


def _check_plan(n: int, s: int, b: int) -> None:
    shards = plan_shards(n, s)
    assert shards == list(iter_shards(n, s))
    assert len(shards) == num_shards(n, s) == -(-n // s)
    # Every index exactly once, in order, shards contiguous.
    covered = [i for sh in shards for i in range(sh.start, sh.stop)]
    assert covered == list(range(n)), (n, s)
    for k, sh in enumerate(shards):
        assert sh.index == k and sh.start == k * s and sh.stop == min((k + 1) * s, n)
        assert 0 < sh.size <= s
        assert shard_for(k, n, s) == sh
        # Batches partition the shard, are at most b long, all full but the last.
        batches = shard_batches(sh, b)
        assert [i for lo, hi in batches for i in range(lo, hi)] == list(range(sh.start, sh.stop))
        sizes = [hi - lo for lo, hi in batches]
        assert all(x == b for x in sizes[:-1]) and 0 < sizes[-1] <= b
        # Batches depend on the shard and b only: relative layout is the same for every full shard.
        if sh.size == s:
            assert [(lo - sh.start, hi - sh.start) for lo, hi in batches] == [
                (lo, hi) for lo, hi in shard_batches(Shard(0, 0, s), b)
            ]


def test_iter_shards_is_lazy():
    it = iter_shards(10**12, 1)
    assert next(it) == Shard(0, 0, 1) and next(it) == Shard(1, 1, 2)
    assert num_shards(10**12, 7) == 142857142858
    assert shard_for(142857142857, 10**12, 7) == Shard(142857142857, 999999999999, 10**12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: plan_shards(0, 4),
        lambda: plan_shards(-3, 4),
        lambda: plan_shards(10, 0),
        lambda: plan_shards(10, 2.5),
        lambda: plan_shards(True, 4),
        lambda: shard_batches(Shard(0, 0, 4), 0),
        lambda: shard_for(3, 10, 4),
        lambda: shard_for(-1, 10, 4),
    ],
)
def test_bad_arguments(call):
    with pytest.raises(ValueError):
        call()
