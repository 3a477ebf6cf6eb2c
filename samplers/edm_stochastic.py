"""EDM's stochastic sampler: before each Heun step, churn — raise the noise level from t to
t_hat = (1 + gamma) t by adding fresh noise — then step from t_hat (Karras et al. 2022, Algorithm 2).

gamma = min(S_churn / steps, sqrt(2) - 1) for t in [S_tmin, S_tmax], else 0; the added noise is
S_noise * the step's deterministic N(0, I) draw (stream 2 + k), drawn only when gamma > 0. gamma is
defined in sigma units, so churn needs a sigma field (alpha = 1: edm, vp_eps). With S_churn = 0 it
is `HeunSampler`, bit for bit. The last step (to t = 0) is Heun's Euler step, with no churn.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from .base import SamplerStateError
from .guidance import GuidedField
from .heun import HeunSampler


@dataclasses.dataclass(kw_only=True)
class EDMStochasticSampler(HeunSampler):
    """Heun with churn; S_tmax=None means no upper limit (EDM's inf, kept JSON-plain)."""

    name = "edm_stochastic"
    S_churn: float = 0.0
    S_tmin: float = 0.0
    S_tmax: float | None = None
    S_noise: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.S_tmax == math.inf:
            self.S_tmax = None  # EDM's default; inf is not plain JSON
        if not (0.0 <= self.S_churn < math.inf and 0.0 <= self.S_noise < math.inf):
            raise SamplerStateError(f"{self.name}: S_churn and S_noise must be finite and >= 0, "
                                    f"got S_churn={self.S_churn!r}, S_noise={self.S_noise!r}")
        if not 0.0 <= self.S_tmin <= (math.inf if self.S_tmax is None else self.S_tmax):
            raise SamplerStateError(f"{self.name}: needs 0 <= S_tmin <= S_tmax, "
                                    f"got S_tmin={self.S_tmin!r}, S_tmax={self.S_tmax!r}")
        self.stochastic = self.S_churn > 0.0

    def check_fields(self, net: Any, g_net: Any, t_max: float) -> None:
        super().check_fields(net, g_net, t_max)
        if self.S_churn > 0 and net.alpha(t_max) != 1.0:
            raise TypeError(f"{self.name}: churn (S_churn={self.S_churn:g}) is defined in sigma units and needs a "
                            f"sigma field (edm, vp_eps), got {net.interface!r}; use S_churn=0 or euler_maruyama")

    def forward(self, net: GuidedField, x: torch.Tensor, t_curr: float, t_next: float, *, noise: Any = None,
                history: dict[str, Any] | None = None) -> torch.Tensor:
        # Karras et al. 2022, Algorithm 2.
        # Increase noise temporarily.
        in_range = self.S_tmin <= t_curr and (self.S_tmax is None or t_curr <= self.S_tmax)
        gamma = min(self.S_churn / self.steps, math.sqrt(2.0) - 1.0) if in_range else 0.0
        t_hat, x_hat = t_curr, x
        if gamma > 0:
            t_hat = min(t_curr + gamma * t_curr, net.t_max_allowed)
            eps = noise()
            x_hat = self.churn(net, x, t_curr, t_hat, eps if self.S_noise == 1.0 else self.S_noise * eps)  # 1.0 * eps is eps
        # Euler step and 2nd order correction from t_hat: Heun's step.
        return super().forward(net, x_hat, t_hat, t_next, history=history)
