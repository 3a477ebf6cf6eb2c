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
    fingerprint: str | None = None  # the job's (pipeline.run.fingerprint); None in outputs written before it

    def __post_init__(self) -> None:
        """A sidecar is user-visible JSON: wrong types ("index": "4") are a ValueError, not a later crash."""
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), (str if f.name in ("path", "sha256", "fingerprint") else int)
            if not (isinstance(value, kind) and not isinstance(value, bool)) and not (f.name == "fingerprint" and value is None):
                raise ValueError(f"{f.name} must be {kind.__name__} (got {value!r})")
