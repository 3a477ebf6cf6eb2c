"""`GaussianNoiseSampler`: i.i.d. N(mean, std^2) samples from the deterministic noise source.
A baseline (e.g. the FID of pure noise) and the simplest implementation of the contract."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from .base import Sampler
from .names import DEFAULT_NOISE_SCHEME
from .noise import SampleNoise


@dataclasses.dataclass(kw_only=True)
class GaussianNoiseSampler(Sampler):
    """x_i = mean + std * eps(seed, i); model arguments are accepted and ignored."""

    name = "gaussian_noise"
    mean: float = 0.0
    std: float = 1.0

    def sample(self, N: int, device: torch.device | str, *, shape: tuple[int, ...] | list[int] = (3, 32, 32),
               seed: int = 0, start_index: int = 0, noise_scheme: str = DEFAULT_NOISE_SCHEME, **model_args: Any) -> torch.Tensor:
        """(N, *shape) float32 samples for indices start_index .. start_index + N - 1 (noise by `noise_scheme`)."""
        return SampleNoise(seed, start_index, N, device, scheme=noise_scheme).start(tuple(shape), torch.float32) * self.std + self.mean
