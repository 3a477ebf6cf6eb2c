"""DPM-Solver++(2M): a second-order multistep solver of the probability-flow ODE in data prediction,
stepping in lambda = log(alpha / sigma) (Lu et al. 2022, "DPM-Solver++", Algorithm 2).

Works for every field through its alpha(t), sigma(t): sigma fields (edm, vp_eps) have alpha = 1 and
lambda = -log sigma (k-diffusion's `sample_dpmpp_2m`); flow fields have alpha = 1 - t, sigma = t. The
first step is first order (no history yet); the last step to t = 0 is the shared Euler step, which is
the denoised estimate D(x, t_{N-1}) as in k-diffusion (exactly so for flow and vp_eps fields).

Arithmetic by state version (the same method; the bits differ in the last places):
    2: x_next = ratio x + c_cur D_cur + c_prev D_prev, its coefficients folded into floats first: one multiply
       and two `add_(alpha=)` tensor ops per step (1 + 1 on the first step).
    1: D = (1 + 1/(2r)) D_cur - (1/(2r)) D_prev; x_next = ratio x - (alpha_next expm1(-h)) D: six tensor ops,
       kept so that states saved with version 1 (outputs written before) sample the same bits on resume.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from .guidance import GuidedField
from .step import StepSampler


@dataclasses.dataclass(kw_only=True)
class DPMSolverPP2MSampler(StepSampler):
    """One network call per step; `history` holds the previous step's (lambda, denoised)."""

    name = "dpmpp_2m"
    version = 2
    state_version: int = dataclasses.field(default=2, init=False, repr=False)  # the arithmetic of a loaded state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DPMSolverPP2MSampler:
        sampler = super().from_state(state)  # rejects a newer version
        sampler.state_version = state.get("version", cls.version)
        return sampler

    def load(self, **state_dict: Any) -> DPMSolverPP2MSampler:
        super().load(**state_dict)
        self.state_version = state_dict.get("version", self.version)
        return self

    def save(self) -> dict[str, Any]:
        return {**super().save(), "version": self.state_version}

    def forward(self, net: GuidedField, x: torch.Tensor, t_curr: float, t_next: float, *, noise: Any = None,
                history: dict[str, Any] | None = None) -> torch.Tensor:
        # Lu et al. 2022, Algorithm 2 (DPM-Solver++(2M)), step i: t_{i-1} = t_curr -> t_i = t_next.
        lambda_cur, lambda_next = net.half_log_snr(t_curr), net.half_log_snr(t_next)
        h = lambda_next - lambda_cur
        denoised = net.denoise(x, t_curr)
        previous = history.get("previous")
        history["previous"] = (lambda_cur, denoised)
        ratio, coef = net.sigma(t_next) / net.sigma(t_curr), net.alpha(t_next) * math.expm1(-h)
        if self.state_version == 1:
            return self._forward_v1(x, denoised, previous, lambda_cur, h, ratio, coef)
        x_next = x * ratio
        if previous is None:  # first step: first order (DPM-Solver++1, i.e. DDIM)
            return x_next.add_(denoised, alpha=-coef)
        lambda_prev, denoised_prev = previous
        half_inv_r = h / (2.0 * (lambda_cur - lambda_prev))  # 1 / (2 r_i), r_i = h_{i-1} / h_i; 0 after alpha = 0
        return x_next.add_(denoised, alpha=-coef * (1.0 + half_inv_r)).add_(denoised_prev, alpha=coef * half_inv_r)

    @staticmethod
    def _forward_v1(x: torch.Tensor, denoised: torch.Tensor, previous: tuple[float, torch.Tensor] | None,
                    lambda_cur: float, h: float, ratio: float, coef: float) -> torch.Tensor:
        """Version 1's arithmetic, operation for operation."""
        if previous is None:
            D = denoised
        else:
            lambda_prev, denoised_prev = previous
            r = (lambda_cur - lambda_prev) / h  # inf after a step from alpha = 0
            D = (1.0 + 1.0 / (2.0 * r)) * denoised - (1.0 / (2.0 * r)) * denoised_prev
        return ratio * x - coef * D
