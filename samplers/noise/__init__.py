"""Deterministic noise: every random draw for sample i depends only on (seed, i, stream, draw).

    streams: 0 = start noise x_T, 1 = class label, 2 + k = noise of integration step k
             (`draw` numbers several independent draws inside one step, e.g. corrector moves).

A draw never depends on batch size, shard layout, actor count, device, retries or resume. How the
bits are made is a named scheme, and the scheme is part of the meaning of every file seedshard
writes (its description is stored in manifests as `noise_scheme`); each scheme's module states it
exactly:
    "v1" (v1.py): one NumPy Philox4x64 generator per sample, drawn on the CPU, then moved.
    "v2" (v2.py): Philox4x32-7 for all rows at once (a compiled loop on the CPU, torch on the device;
                  the same bits), an exact table inverse CDF.
New work uses `DEFAULT_NOISE_SCHEME` (v2); an output keeps the scheme its manifest names, so outputs
written with v1 still verify and resume with v1 (`scheme_named`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from ..names import DEFAULT_NOISE_SCHEME, NOISE_SCHEME_NAMES
from . import v1, v2
from .v1 import generator

START_STREAM = 0
LABEL_STREAM = 1
STEP_STREAM = 2  # step k uses stream STEP_STREAM + k


class NoiseScheme(NamedTuple):
    """A way to make the draws: `normal(seed, start_index, n, stream, draw, shape, device)` gives float32
    (n, *shape), on `device` or on the CPU; `labels(seed, start_index, n, stream, num_classes, device)`."""

    name: str
    description: str  # stored in manifests as noise_scheme
    normal: Callable[..., torch.Tensor]
    labels: Callable[..., torch.Tensor]
    max_index: int  # sample indices must be below it


NOISE_SCHEMES = {
    "v1": NoiseScheme("v1", v1.SCHEME, v1.normal, v1.labels, 1 << 64),
    "v2": NoiseScheme("v2", v2.SCHEME, v2.normal, v2.labels, 1 << 63),
}
assert tuple(NOISE_SCHEMES) == NOISE_SCHEME_NAMES, "samplers/names.py lists the schemes for config checks"


def scheme_named(description: str) -> str:
    """The name of the scheme a manifest's `noise_scheme` describes; ValueError for one this version lacks."""
    for name, scheme in NOISE_SCHEMES.items():
        if scheme.description == description:
            return name
    raise ValueError(f"noise scheme {description!r} is not one this seedshard knows ({', '.join(NOISE_SCHEMES)}); "
                     "upgrade seedshard to read it")


class SampleNoise:
    """All noise for the consecutive sample indices `start_index .. start_index + n - 1`."""

    def __init__(self, seed: int, start_index: int, n: int, device: torch.device | str = "cpu",
                 scheme: str = DEFAULT_NOISE_SCHEME) -> None:
        if scheme not in NOISE_SCHEMES:
            raise ValueError(f"unknown noise scheme {scheme!r}; known: {', '.join(NOISE_SCHEMES)}")
        self.scheme = NOISE_SCHEMES[scheme]
        if not (isinstance(seed, int) and 0 <= seed < 1 << 64):
            raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
        if not (isinstance(start_index, int) and start_index >= 0 and start_index + n <= self.scheme.max_index):
            raise ValueError(f"start_index must be an int >= 0 with start_index + n <= 2**{self.scheme.max_index.bit_length() - 1}"
                             f" (noise scheme {scheme}), got {start_index!r}")
        self.seed, self.start_index, self.n = seed, start_index, n
        self.device = torch.device(device)

    def normal(self, stream: int, shape: Sequence[int], dtype: torch.dtype, draw: int = 0) -> torch.Tensor:
        """Standard normal noise, (n, *shape), on `device` in `dtype`."""
        if self.scheme.name == "v2" and not (0 <= stream < v2.MAX_STREAM and 0 <= draw < v2.MAX_DRAW):
            raise ValueError(f"noise scheme v2 allows stream < 2**20 (steps < {v2.MAX_STREAM - STEP_STREAM}) and "
                             f"draw < 2**12, got stream {stream!r}, draw {draw!r}")
        out = self.scheme.normal(self.seed, self.start_index, self.n, stream, draw, tuple(shape), self.device)
        return out.to(self.device, dtype)

    def start(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """Start noise x_T / prior_scale, (n, *shape)."""
        return self.normal(START_STREAM, shape, dtype)

    def step(self, k: int, like: torch.Tensor, draw: int = 0) -> torch.Tensor:
        """Noise of integration step k, shaped like `like` (n, ...)."""
        return self.normal(STEP_STREAM + k, like.shape[1:], like.dtype, draw)

    def labels(self, num_classes: int) -> torch.Tensor:
        """Uniform class labels in [0, num_classes), (n,) int64 on `device`."""
        if not (isinstance(num_classes, int) and 1 <= num_classes < 1 << 31):
            raise ValueError(f"num_classes must be an int in [1, 2**31), got {num_classes!r}")
        return self.scheme.labels(self.seed, self.start_index, self.n, LABEL_STREAM, num_classes, self.device)


__all__ = ["DEFAULT_NOISE_SCHEME", "LABEL_STREAM", "NOISE_SCHEMES", "NoiseScheme", "START_STREAM", "STEP_STREAM",
           "SampleNoise", "generator", "scheme_named"]

from .producer import NoiseProducer  # noqa: E402  (it builds on SampleNoise)

__all__ += ["NoiseProducer"]
