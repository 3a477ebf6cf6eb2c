"""Rectified flow: x_t = (1 - t) x_0 + t eps, t from 1 (noise) to 0 (data); net(x, t) predicts
the velocity v = eps - x_0 (Liu et al. 2022; Lipman et al. 2022)."""

from __future__ import annotations

from typing import Any

import torch

from .field import Field


class FlowField(Field):
    """`flow` interface: the network's output is the ODE velocity itself."""

    interface = "flow"
    t_max_allowed = 1.0

    def alpha(self, t: float) -> float:
        return 1.0 - t

    def dalpha(self, t: float) -> float:
        return -1.0

    def diffusion(self, t: float) -> float:
        # beta = 2t: bounded at t = 1 (the true forward SDE's 2t / (1 - t) is not), 0 at the data end.
        return 2.0 * t

    def velocity(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        return self.call(x, t, **net_kwargs)
