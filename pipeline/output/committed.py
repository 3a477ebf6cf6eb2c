"""Whether committed shards are still in storage: an object store can lose files after their commit (an
outage, a bucket restored from an older state, someone's cleanup), so the driver checks before it writes
`complete`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .record import ShardRecord
from .shards import sidecar_name


def missing_shards(fs: Any, root: str, records: Iterable[ShardRecord]) -> dict[int, str]:
    """{index: "name (why)"} of the shards whose data file or sidecar is gone, or whose data file has another
    size than its record; one listing of `root`, no reads."""
    fs.invalidate_cache(root)  # the workers wrote here
    try:
        listing = fs.ls(root, detail=True)
    except FileNotFoundError:
        listing = []
    sizes = {info["name"].rstrip("/").rsplit("/", 1)[-1]: info.get("size") for info in listing}
    missing = {}
    for r in records:
        if r.path not in sizes or sidecar_name(r.path) not in sizes:
            missing[r.index] = f"{r.path if r.path not in sizes else sidecar_name(r.path)} (gone)"
        elif sizes[r.path] is not None and sizes[r.path] != r.bytes:
            missing[r.index] = f"{r.path} ({sizes[r.path]} bytes, committed {r.bytes})"
    return missing
