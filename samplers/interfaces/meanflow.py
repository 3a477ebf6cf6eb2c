"""MeanFlow: flow time (x_t = (1 - t) x_0 + t eps); net(x, r, t) predicts the average velocity
u(x_t, r, t) = (x_t - x_r) / (t - r) along the ODE, so one jump x_r = x_t - (t - r) u
(Geng et al. 2025, "Mean Flows for One-step Generative Modeling")."""

from __future__ import annotations

from typing import Any

import torch

from .flow import FlowField


class MeanFlowField(FlowField):
    """`meanflow` interface: instantaneous velocity is u(x, t, t)."""

    interface = "meanflow"

    def average_velocity(self, x: torch.Tensor, r: float, t: float, **net_kwargs: Any) -> torch.Tensor:
        """u(x_t, r, t), shaped like x."""
        return self.call(x, r, t, **net_kwargs)

    def velocity(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        return self.call(x, t, t, **net_kwargs)
