"""Euler jumps with a MeanFlow average velocity: x_r = x_t - (t - r) u(x_t, r, t)
(Geng et al. 2025, Algorithm 2); with steps = 1 it maps t = 1 to 0 in one evaluation."""

from __future__ import annotations

from typing import Any

import torch

from .interfaces import Field, MeanFlowField
from .step import StepSampler


class EulerJumpSampler(StepSampler):
    """Exact for an exact average-velocity field, whatever the number of steps."""

    name = "euler_jump"
    requires = MeanFlowField

    def forward(self, net: Field, x: torch.Tensor, t_curr: float, t_next: float, g_net: Field | None = None,
                guidance_scale: float = 1.0, *, noise: Any = None, **net_kwargs: Any) -> torch.Tensor:
        u = self.guided("average_velocity", net, g_net, guidance_scale, x, t_next, t_curr, **net_kwargs)
        return x + (t_next - t_curr) * u

    def last_step(self, net: Field, x: torch.Tensor, t_curr: float, t_last: float, g_net: Field | None = None,
                  guidance_scale: float = 1.0, **net_kwargs: Any) -> torch.Tensor:
        return self.forward(net, x, t_curr, t_last, g_net, guidance_scale, **net_kwargs)
