"""Euler-Maruyama on the reverse-time SDE dx = [v - beta/2 score] dt + sqrt(beta) dw
(Song et al. 2021, Eq. 6 with the field's beta(t)); no noise on the last step."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from .guidance import GuidedField
from .step import StepSampler


@dataclasses.dataclass(kw_only=True)
class EulerMaruyamaSampler(StepSampler):
    """Stochastic first-order sampler; its last step is the probability-flow Euler step (Tweedie's denoiser
    for sigma fields)."""

    name = "euler_maruyama"
    stochastic: bool = dataclasses.field(default=True, init=False, repr=False)

    def forward(self, net: GuidedField, x: torch.Tensor, t_curr: float, t_next: float, *, noise: Any = None,
                history: dict[str, Any] | None = None) -> torch.Tensor:
        dt = t_next - t_curr  # < 0: time runs backwards
        drift = net.sde_drift(x, t_curr)
        return x + dt * drift + math.sqrt(net.diffusion(t_curr) * -dt) * noise()
