"""What a shard codec is: a file extension and a pair of pure functions between arrays and bytes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

COLUMNS = ("index", "label", "sample")
LATENT = "latent"  # the optional pre-decode latents of a latent model (run.store_latents), beside `sample`


@dataclasses.dataclass(frozen=True)
class ShardData:
    """Decoded shard: indices (rows,), labels (rows,) or None, samples (rows, *shape), and latents
    (rows, *latent shape) float32 or None (run.store_latents)."""

    indices: np.ndarray
    labels: np.ndarray | None
    samples: np.ndarray
    metadata: dict[str, str]
    latents: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Codec:
    """A shard file format.

    encode(indices int64 (rows,), labels int64 (rows,) | None, samples (rows, *shape), metadata sorted
    str -> str, latents (rows, *latent shape) | None) -> bytes, a deterministic function of its arguments; decode(bytes) -> ShardData, raising
    ValueError for bytes that are not such a file; ray_reader(paths, filesystem) -> ray.data.Dataset
    when Ray Data reads the format natively.
    """

    name: str
    ext: str
    encode: Callable[..., bytes]  # (indices, labels, samples, meta, latents=None)
    decode: Callable[[bytes], ShardData]
    ray_reader: Callable[[list[str], Any], Any] | None = None
