"""DPM-Solver++(2M): a second-order multistep solver of the probability-flow ODE in data prediction,
stepping in lambda = log(alpha / sigma) (Lu et al. 2022, "DPM-Solver++", Algorithm 2).

Works for every field through its alpha(t), sigma(t): sigma fields (edm, vp_eps) have alpha = 1 and
lambda = -log sigma (k-diffusion's `sample_dpmpp_2m`); flow fields have alpha = 1 - t, sigma = t. The
first step is first order (no history yet); the last step to t = 0 is the shared Euler step, which is
the denoised estimate D(x, t_{N-1}) as in k-diffusion (exactly so for flow and vp_eps fields).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .guidance import GuidedField
from .step import StepSampler


class DPMSolverPP2MSampler(StepSampler):
    """One network call per step; `history` holds the previous step's (lambda, denoised)."""

    name = "dpmpp_2m"

    def forward(self, net: GuidedField, x: torch.Tensor, t_curr: float, t_next: float, *, noise: Any = None,
                history: dict[str, Any] | None = None) -> torch.Tensor:
        # Lu et al. 2022, Algorithm 2 (DPM-Solver++(2M)), step i: t_{i-1} = t_curr -> t_i = t_next.
        lambda_cur, lambda_next = net.half_log_snr(t_curr), net.half_log_snr(t_next)
        h = lambda_next - lambda_cur
        denoised = net.denoise(x, t_curr)
        if "previous" not in history:  # first step: first order (DPM-Solver++1, i.e. DDIM)
            D = denoised
        else:
            lambda_prev, denoised_prev = history["previous"]
            r = (lambda_cur - lambda_prev) / h  # r_i = h_{i-1} / h_i; inf after a step from alpha = 0
            D = (1.0 + 1.0 / (2.0 * r)) * denoised - (1.0 / (2.0 * r)) * denoised_prev
        history["previous"] = (lambda_cur, denoised)
        return (net.sigma(t_next) / net.sigma(t_curr)) * x - (net.alpha(t_next) * math.expm1(-h)) * D
