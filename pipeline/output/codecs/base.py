"""What a shard codec is: a file extension and a pair of pure functions between arrays and bytes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

COLUMNS = ("index", "label", "sample")


@dataclasses.dataclass(frozen=True)
class ShardData:
    """Decoded shard: indices (rows,), labels (rows,) or None, samples (rows, *shape)."""

    indices: np.ndarray
    labels: np.ndarray | None
    samples: np.ndarray
    metadata: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Codec:
    """A shard file format.

    encode(indices int64 (rows,), labels int64 (rows,) | None, samples (rows, *shape), metadata sorted
    str -> str) -> bytes, a deterministic function of its arguments; decode(bytes) -> ShardData, raising
    ValueError for bytes that are not such a file; ray_reader(paths, filesystem) -> ray.data.Dataset
    when Ray Data reads the format natively.
    """

    name: str
    ext: str
    encode: Callable[[np.ndarray, np.ndarray | None, np.ndarray, dict[str, str]], bytes]
    decode: Callable[[bytes], ShardData]
    ray_reader: Callable[[list[str], Any], Any] | None = None
