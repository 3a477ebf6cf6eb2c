"""Whether committed shards are still in storage: an object store can lose files after their commit (an
outage, a bucket restored from an older state, someone's cleanup), so the driver checks before it writes
`complete`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .layout import side_root
from .record import ShardRecord
from .shards import sidecar_name


def _sizes(fs: Any, folder: str) -> dict[str, int | None]:
    """{file name: size} of the files directly under `folder` ({} when it does not exist)."""
    fs.invalidate_cache(folder)  # the workers wrote here
    try:
        listing = fs.ls(folder, detail=True)
    except FileNotFoundError:
        listing = []
    return {info["name"].rstrip("/").rsplit("/", 1)[-1]: info.get("size") for info in listing}


def missing_shards(fs: Any, root: str, records: Iterable[ShardRecord], version: int) -> dict[int, str]:
    """{index: "name (why)"} of the shards whose data file or sidecar is gone, or whose data file has another
    size than its record, in an output of format `version`; one listing of `root` (and its side folder), no reads."""
    sizes = _sizes(fs, root)
    sidecars = sizes if side_root(root, version) == root else _sizes(fs, side_root(root, version))
    missing = {}
    for r in records:
        if r.path not in sizes or sidecar_name(r.path) not in sidecars:
            missing[r.index] = f"{r.path if r.path not in sizes else sidecar_name(r.path)} (gone)"
        elif sizes[r.path] is not None and sizes[r.path] != r.bytes:
            missing[r.index] = f"{r.path} ({sizes[r.path]} bytes, committed {r.bytes})"
    return missing
