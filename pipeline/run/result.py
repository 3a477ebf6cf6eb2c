"""`ShardResult`: what running one shard on a worker returns to the driver (plain data, pickled by Ray)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..fid.stats import FeatureStats
    from ..output.record import ShardRecord


@dataclass(frozen=True)
class ShardResult:
    """One shard's outcome: its rows, its committed record (None when samples are not stored), feature
    statistics of the stored samples (None without metrics.fid), and the worker's seconds spent sampling
    (excluding the wait for the other call's sampling) and encoding + writing."""

    rows: int
    record: ShardRecord | None
    stats: FeatureStats | None
    sample_s: float
    write_s: float
