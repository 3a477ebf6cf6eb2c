"""DDIM: x_next = alpha_next x0 + sqrt(sigma_next^2 - s^2) eps + s z (Song et al. 2021, "Denoising
Diffusion Implicit Models", Eq. 12), in the field's own (alpha, sigma).

x0 = D(x, t) and eps = (x - alpha x0) / sigma come from one network call. The noise scale is
s = eta * sqrt(posterior variance of q(x_next | x, x0)) = eta * sigma_next * sqrt(1 - exp(-2 h)),
h = lambda_next - lambda_cur, lambda = log(alpha / sigma): for VP models this is Eq. 16's
sigma_t(eta); for sigma fields (alpha = 1) it is k-diffusion's ancestral sigma_up. eta = 0 is the
deterministic DDIM, a first-order solver of the probability-flow ODE (Euler in sigma for sigma
fields); eta = 1 is DDPM's ancestral sampling. The last step to t = 0 returns x0, with no noise.

With a field that clips x0 (vp_* with clip_sample / thresholding), the step pairs the clipped x0 with
the network's own eps, as diffusers' DDIMScheduler does by default; use_clipped_model_output=True
re-derives eps from the clipped x0 instead (diffusers' step option of that name; DDPM's posterior).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from .base import SamplerStateError
from .guidance import GuidedField
from .step import StepSampler


@dataclasses.dataclass(kw_only=True)
class DDIMSampler(StepSampler):
    """One network call per step; draws the step's noise only when eta > 0."""

    name = "ddim"
    eta: float = 0.0
    use_clipped_model_output: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.eta <= 1.0:
            raise SamplerStateError(f"{self.name}: eta must be in [0, 1], got {self.eta!r}")
        self.stochastic = self.eta > 0.0

    def forward(self, net: GuidedField, x: torch.Tensor, t_curr: float, t_next: float, *, noise: Any = None,
                history: dict[str, Any] | None = None) -> torch.Tensor:
        # Song et al. 2021, Eq. 12: "predicted x0", "direction pointing to x_t", "random noise".
        if getattr(net, "clips", False) and not self.use_clipped_model_output:
            x0, eps = net.denoise_and_raw_eps(x, t_curr)
        else:
            x0 = net.denoise(x, t_curr)
            eps = (x - net.alpha(t_curr) * x0) / net.sigma(t_curr)
        h = net.half_log_snr(t_next) - net.half_log_snr(t_curr)
        sigma_next = net.sigma(t_next)
        s = self.eta * sigma_next * math.sqrt(-math.expm1(-2.0 * h))
        x_next = net.alpha(t_next) * x0 + math.sqrt(sigma_next**2 - s**2) * eps
        if s > 0.0:
            x_next = x_next + s * noise()
        return x_next
