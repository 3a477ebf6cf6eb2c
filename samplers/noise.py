"""Deterministic noise: every random draw for sample i depends only on (seed, i, stream, draw).

This scheme is part of the meaning of every file seedshard writes (`NOISE_SCHEME` is stored
in manifests), so it is stated exactly:

    generator(seed, i, stream, draw) = numpy.random.Generator(numpy.random.Philox(
        key=seed + 2**64 * i,                 # 128-bit key: word 0 = seed, word 1 = index
        counter=[0, stream, draw, 0]))        # 256-bit counter start
    streams: 0 = start noise x_T, 1 = class label, 2 + k = noise of integration step k
             (`draw` numbers several independent draws inside one step, e.g. corrector moves).
    normal draws:  generator.standard_normal(shape, dtype=float32)   (NumPy's ziggurat)
    labels:        generator.integers(num_classes)                   (stream 1, draw 0)

Philox4x64 is a counter-based generator (Salmon et al. 2011, "Parallel random numbers: as easy
as 1, 2, 3"): distinct keys give independent streams, so distinct (seed, index) pairs never
share noise. (torch's CPU generator would not do: it truncates its seed to 32 bits, and
2**32 seeds collide within one large job.) Draws happen on the CPU in float32 and are then
moved to the device and cast, so a sample is the same on CPU and CUDA, and independent of
batch size, shard layout, actor count, retries and resume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

NOISE_SCHEME = "philox4x64(key=seed+2**64*index, counter=[0,stream,draw,0]) float32 ziggurat; v1"
START_STREAM = 0
LABEL_STREAM = 1
STEP_STREAM = 2  # step k uses stream STEP_STREAM + k

_U64 = 1 << 64


def generator(seed: int, index: int, stream: int, draw: int = 0) -> np.random.Generator:
    """The generator of draw `draw` of stream `stream` for sample `index` under `seed`."""
    return np.random.Generator(np.random.Philox(key=seed + _U64 * index, counter=[0, stream, draw, 0]))


class _Rekeyed:
    """`generator(seed, index, stream, draw)` for many indices from one Philox object.

    Building a Philox takes ~9 us; setting its state to the fresh state of the next index's key takes
    <1 us and gives the same bits (key words [seed, index], counter and output buffer as new)."""

    def __init__(self, seed: int, stream: int, draw: int) -> None:
        self.bitgen = np.random.Philox(key=seed, counter=[0, stream, draw, 0])
        self.generator = np.random.Generator(self.bitgen)
        self.fresh = self.bitgen.state  # a copy: key [seed, 0], counter [0, stream, draw, 0], empty buffer

    def at(self, index: int) -> np.random.Generator:
        self.fresh["state"]["key"][1] = index
        self.bitgen.state = self.fresh
        return self.generator


class SampleNoise:
    """All noise for the consecutive sample indices `start_index .. start_index + n - 1`."""

    def __init__(self, seed: int, start_index: int, n: int, device: torch.device | str = "cpu") -> None:
        if not (isinstance(seed, int) and 0 <= seed < _U64):
            raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
        if not (isinstance(start_index, int) and start_index >= 0 and start_index + n <= _U64):
            raise ValueError(f"start_index must be an int >= 0, got {start_index!r}")
        self.seed, self.start_index, self.n = seed, start_index, n
        self.device = torch.device(device)

    def normal(self, stream: int, shape: Sequence[int], dtype: torch.dtype, draw: int = 0) -> torch.Tensor:
        """Standard normal noise, (n, *shape), on `device` in `dtype`."""
        out = np.empty((self.n, *shape), dtype=np.float32)
        rekeyed = _Rekeyed(self.seed, stream, draw)
        for row in range(self.n):
            rekeyed.at(self.start_index + row).standard_normal(out.shape[1:], dtype=np.float32, out=out[row])
        return torch.from_numpy(out).to(self.device, dtype)

    def start(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """Start noise x_T / prior_scale, (n, *shape)."""
        return self.normal(START_STREAM, shape, dtype)

    def step(self, k: int, like: torch.Tensor, draw: int = 0) -> torch.Tensor:
        """Noise of integration step k, shaped like `like` (n, ...)."""
        return self.normal(STEP_STREAM + k, like.shape[1:], like.dtype, draw)

    def labels(self, num_classes: int) -> torch.Tensor:
        """Uniform class labels in [0, num_classes), (n,) int64 on `device`."""
        rekeyed = _Rekeyed(self.seed, LABEL_STREAM, 0)
        labels = [int(rekeyed.at(self.start_index + row).integers(num_classes)) for row in range(self.n)]
        return torch.tensor(labels, dtype=torch.int64, device=self.device)
