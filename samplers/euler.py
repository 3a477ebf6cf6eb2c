"""Euler's method on the probability-flow ODE (first order)."""

from __future__ import annotations

from typing import Any

import torch

from .interfaces import Field
from .step import StepSampler


class EulerSampler(StepSampler):
    """x_next = x + (t_next - t) v(x, t)."""

    name = "euler"

    def forward(self, net: Field, x: torch.Tensor, t_curr: float, t_next: float, g_net: Field | None = None,
                guidance_scale: float = 1.0, *, noise: Any = None, **net_kwargs: Any) -> torch.Tensor:
        d_cur = self.velocity(net, x, t_curr, g_net, guidance_scale, **net_kwargs)
        return x + (t_next - t_curr) * d_cur
