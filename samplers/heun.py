"""Heun's second-order method on the probability-flow ODE; Euler on the last step to t = 0."""

from __future__ import annotations

from typing import Any

import torch

from .interfaces import Field
from .step import StepSampler


class HeunSampler(StepSampler):
    """EDM's deterministic sampler: 2 * steps - 1 network calls."""

    name = "heun"

    def forward(self, net: Field, x: torch.Tensor, t_curr: float, t_next: float, g_net: Field | None = None,
                guidance_scale: float = 1.0, *, noise: Any = None, **net_kwargs: Any) -> torch.Tensor:
        # Karras et al. 2022, Algorithm 1 (lines 4-8).
        # Euler step.
        d_cur = self.velocity(net, x, t_curr, g_net, guidance_scale, **net_kwargs)
        x_next = x + (t_next - t_curr) * d_cur
        # Apply 2nd order correction.
        d_prime = self.velocity(net, x_next, t_next, g_net, guidance_scale, **net_kwargs)
        # x + h (d_cur / 2 + d_prime / 2), written with 3 tensor ops instead of 5; halving is exact in
        # binary floating point (short of subnormals), so the bits are the same.
        return x + (0.5 * (t_next - t_curr)) * (d_cur + d_prime)
