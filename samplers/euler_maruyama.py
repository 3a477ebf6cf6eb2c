"""Euler-Maruyama on the reverse-time SDE dx = [v - beta/2 score] dt + sqrt(beta) dw
(Song et al. 2021, Eq. 6 with the field's beta(t)); no noise on the last step."""

from __future__ import annotations

import math
from typing import Any

import torch

from .interfaces import Field
from .step import StepSampler


class EulerMaruyamaSampler(StepSampler):
    """Stochastic first-order sampler; its last step is the probability-flow Euler step (Tweedie's denoiser
    for sigma fields)."""

    name = "euler_maruyama"
    stochastic = True

    def forward(self, net: Field, x: torch.Tensor, t_curr: float, t_next: float, g_net: Field | None = None,
                guidance_scale: float = 1.0, *, noise: Any = None, **net_kwargs: Any) -> torch.Tensor:
        dt = t_next - t_curr  # < 0: time runs backwards
        drift = self.guided("sde_drift", net, g_net, guidance_scale, x, t_curr, **net_kwargs)
        return x + dt * drift + math.sqrt(net.diffusion(t_curr) * -dt) * noise()
