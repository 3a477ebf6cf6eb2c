"""Noise scheme v1: one NumPy Philox4x64 generator per sample row, on the CPU.

This scheme is part of the meaning of every file written with it (its `SCHEME` string is stored
in manifests as `noise_scheme`), so it is stated exactly:

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

SCHEME = "philox4x64(key=seed+2**64*index, counter=[0,stream,draw,0]) float32 ziggurat; v1"

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


def normal(seed: int, start_index: int, n: int, stream: int, draw: int, shape: Sequence[int],
           device: torch.device) -> torch.Tensor:
    """Standard normal draw (stream, draw) for indices start_index .. +n-1: (n, *shape) float32 on the CPU."""
    out = np.empty((n, *shape), dtype=np.float32)
    rekeyed = _Rekeyed(seed, stream, draw)
    for row in range(n):
        rekeyed.at(start_index + row).standard_normal(out.shape[1:], dtype=np.float32, out=out[row])
    return torch.from_numpy(out)


def labels(seed: int, start_index: int, n: int, stream: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """Uniform labels in [0, num_classes) from draw 0 of `stream`: (n,) int64 on device."""
    rekeyed = _Rekeyed(seed, stream, 0)
    values = [int(rekeyed.at(start_index + row).integers(num_classes)) for row in range(n)]
    return torch.tensor(values, dtype=torch.int64, device=device)
