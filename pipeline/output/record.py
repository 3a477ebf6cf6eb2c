"""`ShardRecord`: what the sidecar and the manifest say about one committed shard (plain Python, no I/O)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ShardRecord:
    """A committed shard: rows [start, stop) in file ``path`` (relative to the root)."""

    index: int
    start: int
    stop: int
    path: str
    rows: int
    bytes: int
    sha256: str
