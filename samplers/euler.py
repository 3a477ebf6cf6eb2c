"""Euler's method on the probability-flow ODE (first order)."""

from __future__ import annotations

from typing import Any

import torch

from .guidance import GuidedField
from .step import StepSampler


class EulerSampler(StepSampler):
    """x_next = x + (t_next - t) v(x, t)."""

    name = "euler"

    def forward(self, net: GuidedField, x: torch.Tensor, t_curr: float, t_next: float, *, noise: Any = None,
                history: dict[str, Any] | None = None) -> torch.Tensor:
        d_cur = net.velocity(x, t_curr)
        return x + (t_next - t_curr) * d_cur
