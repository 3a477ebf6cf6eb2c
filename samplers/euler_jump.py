"""Euler jumps with a MeanFlow average velocity: x_r = x_t - (t - r) u(x_t, r, t)
(Geng et al. 2025, Algorithm 2); with steps = 1 it maps t = 1 to 0 in one evaluation."""

from __future__ import annotations

from typing import Any

import torch

from .guidance import GuidedField
from .interfaces import MeanFlowField
from .step import StepSampler


class EulerJumpSampler(StepSampler):
    """Exact for an exact average-velocity field, whatever the number of steps."""

    name = "euler_jump"
    requires = MeanFlowField

    def forward(self, net: GuidedField, x: torch.Tensor, t_curr: float, t_next: float, *, noise: Any = None,
                history: dict[str, Any] | None = None) -> torch.Tensor:
        u = net.average_velocity(x, t_next, t_curr)
        return x + (t_next - t_curr) * u

    def last_step(self, net: GuidedField, x: torch.Tensor, t_curr: float, t_last: float, *, noise: Any = None,
                  history: dict[str, Any] | None = None) -> torch.Tensor:
        return self.forward(net, x, t_curr, t_last, noise=noise, history=history)
