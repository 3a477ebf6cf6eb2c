"""Epsilon-prediction DDPM models (Ho et al. 2020), seen in EDM's sigma coordinates.

A VP model is trained on x_vp = sqrt(abar) x_0 + sqrt(1 - abar) eps at discrete timesteps.
With sigma = sqrt((1 - abar) / abar) and x = x_vp / sqrt(abar) = x_0 + sigma eps, it becomes a
VE denoiser D(x, sigma) = x - sigma * eps(x / sqrt(1 + sigma^2), timestep(sigma)), where
timestep(sigma) interpolates log sigma over the training schedule (as k-diffusion's
`DiscreteEpsDDPMDenoiser`; Karras et al. 2022, Appendix C.2). t is sigma.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .field import Field


def ddpm_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, beta_schedule: str = "linear"
) -> np.ndarray:
    """abar_i of a DDPM training schedule, float64 [num_train_timesteps] (diffusers' names)."""
    if beta_schedule == "linear":
        betas = np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)
    elif beta_schedule == "scaled_linear":
        betas = np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=np.float64) ** 2
    else:
        raise ValueError(f"unknown beta_schedule {beta_schedule!r}; allowed: linear, scaled_linear")
    return np.cumprod(1.0 - betas)


class VPEpsField(Field):
    """`vp_eps` interface: net(x_vp, timestep) predicts eps; exposes sigma_min / sigma_max."""

    interface = "vp_eps"

    def __init__(
        self,
        net: Any,
        *,
        alphas_cumprod: Sequence[float] | None = None,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        quantize: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(net, dtype=dtype)
        abar = (
            np.asarray(alphas_cumprod, dtype=np.float64)
            if alphas_cumprod is not None
            else ddpm_alphas_cumprod(num_train_timesteps, beta_start, beta_end, beta_schedule)
        )
        self.log_sigmas = 0.5 * np.log((1.0 - abar) / abar)
        self.sigma_min, self.sigma_max = float(np.exp(self.log_sigmas[0])), float(np.exp(self.log_sigmas[-1]))
        self.quantize = quantize
        self.t_max_allowed = self.sigma_max * (1 + 1e-6)

    def timestep(self, sigma: float) -> float:
        """Training timestep (fractional unless `quantize`) whose sigma is `sigma`."""
        ts = float(np.interp(math.log(sigma), self.log_sigmas, np.arange(len(self.log_sigmas))))
        return float(round(ts)) if self.quantize else ts

    def eps(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        return self.call(x / math.sqrt(1.0 + t * t), self.timestep(t), **net_kwargs)

    def velocity(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        return self.eps(x, t, **net_kwargs)

    def denoise(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        return x - t * self.eps(x, t, **net_kwargs)
