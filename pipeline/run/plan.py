"""The shard plan: which sample indices each shard and each batch covers.

A request for N samples with shard size S is split into ceil(N / S) shards; shard k covers
the indices [k*S, min((k+1)*S, N)). Inside a shard, batches of size B cover
[start, start+B), [start+B, start+2B), ..., the last one possibly shorter. Both are pure
functions of (N, S, B), so a shard's bytes do not depend on which actor runs it, or when.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Shard", "iter_shards", "num_shards", "plan_shards", "shard_batches", "shard_for"]


@dataclass(frozen=True)
class Shard:
    """Shard `index` covers sample indices [start, stop)."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive integer (got {v!r})")


def num_shards(num_samples: int, shard_size: int) -> int:
    """ceil(num_samples / shard_size)."""
    _check_positive(num_samples=num_samples, shard_size=shard_size)
    return -(-num_samples // shard_size)


def shard_for(index: int, num_samples: int, shard_size: int) -> Shard:
    """Shard number `index` of the plan, without building the others."""
    n = num_shards(num_samples, shard_size)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise ValueError(f"shard index must be in [0, {n}) (got {index!r})")
    start = index * shard_size
    return Shard(index, start, min(start + shard_size, num_samples))


def iter_shards(num_samples: int, shard_size: int) -> Iterator[Shard]:
    """The shards of the plan in order, lazily (no list of 10^5 shards)."""
    for k in range(num_shards(num_samples, shard_size)):
        start = k * shard_size
        yield Shard(k, start, min(start + shard_size, num_samples))


def plan_shards(num_samples: int, shard_size: int) -> list[Shard]:
    """All shards: shard k covers [k*S, min((k+1)*S, N)); S > N gives one shard."""
    return list(iter_shards(num_samples, shard_size))


def shard_batches(shard: Shard, batch_size: int) -> list[tuple[int, int]]:
    """The fixed (start, stop) batches inside `shard`: [start, start+B), ..., last one shorter."""
    _check_positive(batch_size=batch_size)
    starts = range(shard.start, shard.stop, batch_size)
    return [(b, min(b + batch_size, shard.stop)) for b in starts]
