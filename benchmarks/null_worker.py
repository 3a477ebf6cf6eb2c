"""A stand-in for SamplerWorker that computes and writes nothing (for benchmarks/driver_scale.py).

`run(shard)` returns what `SamplerWorker.run` returns (a ShardResult with a ShardRecord) after an
optional sleep, so the real driver loop can be driven at 10^5 shards by dozens of actors.
The actor must stay small (dozens of them share 2 cores): it loads only pure-Python modules
(`pipeline/run/plan.py`, `result.py`, `pipeline/output/record.py`; `import pipeline` itself is lazy),
never torch (~180 MB per process).
"""

from __future__ import annotations

import os
import sys
import time

from pipeline.output.record import ShardRecord
from pipeline.run.result import ShardResult


class NullWorker:
    """Same remote interface as SamplerWorker (`ready`, `run`); `run` sleeps `sleep_s` and returns metadata."""

    def __init__(self, sleep_s: float = 0.0) -> None:
        self.sleep_s = sleep_s

    def ready(self) -> dict:
        return {"pid": os.getpid(), "device": "null", "torch": "torch" in sys.modules}

    def run(self, shard) -> ShardResult:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        record = ShardRecord(index=shard.index, start=shard.start, stop=shard.stop,
                             path=f"shard-{shard.index:05d}.parquet", rows=shard.stop - shard.start, bytes=0,
                             sha256="0" * 64)
        return ShardResult(rows=shard.stop - shard.start, record=record, stats=None, sample_s=0.0, write_s=0.0)
