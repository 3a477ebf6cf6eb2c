"""Variance-preserving (DDPM) models seen in EDM's sigma coordinates: the shared part of `vp_eps`, `vp_v`, `vp_x0`.

A VP model is trained on x_vp = sqrt(abar) x_0 + sqrt(1 - abar) eps at discrete timesteps i = 0 .. N-1 (Ho et al.
2020). With sigma = sqrt((1 - abar) / abar) and x = x_vp / sqrt(abar) = x_0 + sigma eps (so sqrt(abar) =
1 / sqrt(1 + sigma^2)), integrators see a sigma field: t = sigma decreasing to 0, alpha = 1 (Karras et al. 2022,
Appendix C.2; k-diffusion's `DiscreteEpsDDPMDenoiser`). The raw network is called as net(x_vp, timestep(sigma)),
timestep(sigma) inverting the training table by interpolating log sigma (`sigma_interp='log'`, k-diffusion) or sigma
(`'linear'`, diffusers' EulerDiscreteScheduler), rounded to an integer if `quantize`. It predicts, by interface,
    vp_eps: eps;    vp_v: v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho 2022);    vp_x0: x_0.

Clipping: diffusers' DDIM/DDPM/DPM-Solver schedulers clip the predicted x_0 (`clip_sample`, to +-clip_sample_range)
or threshold it dynamically (`thresholding`, Saharia et al. 2022). Here these are interface options: `denoise` returns
the clipped x_0 and eps, velocity and score are re-derived from it, eps = (x - x_0) / sigma, so every integrator sees
one consistent field. (This is diffusers' `use_clipped_model_output=True`; diffusers' DDIM default instead pairs the
clipped x_0 with the unclipped eps.)

Start noise: `start_noise='sigma'` (default; k-diffusion, EDM) starts from x_T = sigma_max eps; `start_noise='vp'`
from x_vp,T = eps, i.e. x_T = sqrt(1 + sigma_max^2) eps: diffusers' `init_noise_sigma` of 1 (DDIM, DDPM,
DPM-Solver), or sqrt(sigma_max^2 + 1) (EulerDiscreteScheduler with timestep_spacing='leading').
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from .field import Field

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def cosine_betas(num_train_timesteps: int, max_beta: float = 0.999) -> list[float]:
    """Betas of the cosine schedule abar(t) = cos^2((t + 0.008) / 1.008 * pi / 2) (Nichol & Dhariwal 2021, Eq. 17),
    diffusers' 'squaredcos_cap_v2'."""
    def abar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    n = num_train_timesteps
    return [min(1 - abar((i + 1) / n) / abar(i / n), max_beta) for i in range(n)]


def ddpm_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, beta_schedule: str = "linear",
    trained_betas: Sequence[float] | None = None, table_dtype: Literal["float64", "float32"] = "float64",
) -> np.ndarray:
    """abar_i of a DDPM training schedule, float64 [num_train_timesteps] (diffusers' names). `table_dtype='float32'`
    builds it as diffusers' schedulers do (float32 betas and cumprod), so grids and timesteps match theirs exactly."""
    if beta_schedule not in BETA_SCHEDULES and trained_betas is None:
        raise ValueError(f"unknown beta_schedule {beta_schedule!r}; allowed: {', '.join(BETA_SCHEDULES)}")
    if table_dtype not in ("float64", "float32"):
        raise ValueError(f"table_dtype must be 'float64' or 'float32', got {table_dtype!r}")
    n = num_train_timesteps
    if table_dtype == "float32":  # diffusers' DDPMScheduler.__init__, line by line
        f32 = torch.float32
        if trained_betas is not None:
            betas = torch.tensor(list(trained_betas), dtype=f32)
        elif beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, n, dtype=f32)
        elif beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=f32) ** 2
        else:
            betas = torch.tensor(cosine_betas(n), dtype=f32)
        return torch.cumprod(1.0 - betas, dim=0).double().numpy()
    if trained_betas is not None:
        betas = np.asarray(trained_betas, dtype=np.float64)
    elif beta_schedule == "linear":
        betas = np.linspace(beta_start, beta_end, n, dtype=np.float64)
    elif beta_schedule == "scaled_linear":
        betas = np.linspace(beta_start**0.5, beta_end**0.5, n, dtype=np.float64) ** 2
    else:
        betas = np.asarray(cosine_betas(n), dtype=np.float64)
    return np.cumprod(1.0 - betas)


def threshold_x0(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Dynamic thresholding (Saharia et al. 2022, Sec. 2.3) as diffusers' `_threshold_sample`: per sample, s = the
    `ratio` quantile of |x0| clamped to [1, max_value], then x0 -> clamp(x0, -s, s) / s. x0: (N, ...)."""
    flat = x0.reshape(x0.shape[0], -1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # quantile needs float32/64
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    return (torch.clamp(flat, -s, s) / s).reshape(x0.shape).to(x0.dtype)


class VPField(Field):
    """A DDPM-trained network as a sigma field; subclasses say how its output gives x_0 and eps."""

    interface: ClassVar[str]

    def __init__(
        self,
        net: Any,
        *,
        alphas_cumprod: Sequence[float] | None = None,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Sequence[float] | None = None,
        table_dtype: Literal["float64", "float32"] = "float64",
        quantize: bool = False,
        sigma_interp: Literal["log", "linear"] = "log",
        start_noise: Literal["sigma", "vp"] = "sigma",
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(net, dtype=dtype)
        if alphas_cumprod is not None:
            abar = np.asarray(alphas_cumprod, dtype=np.float64)
        else:
            abar = ddpm_alphas_cumprod(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
                                       table_dtype)
        for name, value, allowed in (("sigma_interp", sigma_interp, ("log", "linear")),
                                     ("start_noise", start_noise, ("sigma", "vp"))):
            if value not in allowed:
                raise ValueError(f"{self.interface}: {name} must be one of {', '.join(allowed)}; got {value!r}")
        if not (clip_sample_range > 0 and 0 < dynamic_thresholding_ratio <= 1 and sample_max_value >= 1):
            raise ValueError(f"{self.interface}: needs clip_sample_range > 0, 0 < dynamic_thresholding_ratio <= 1, "
                             f"sample_max_value >= 1; got {clip_sample_range}, {dynamic_thresholding_ratio}, "
                             f"{sample_max_value}")
        self.log_sigmas = 0.5 * np.log((1.0 - abar) / abar)
        self.sigma_min, self.sigma_max = float(np.exp(self.log_sigmas[0])), float(np.exp(self.log_sigmas[-1]))
        self.t_max_allowed = self.sigma_max * (1 + 1e-6)
        self.quantize, self.sigma_interp, self.start_noise = bool(quantize), sigma_interp, start_noise
        self.clip_sample, self.clip_sample_range = bool(clip_sample), float(clip_sample_range)
        self.thresholding = bool(thresholding)
        self.dynamic_thresholding_ratio = float(dynamic_thresholding_ratio)
        self.sample_max_value = float(sample_max_value)

    # -- the training table and the start noise ------------------------------------------------
    def timestep(self, sigma: float) -> float:
        """Training timestep (fractional unless `quantize`) whose sigma is `sigma`."""
        if self.sigma_interp == "linear":
            ts = float(np.interp(sigma, np.exp(self.log_sigmas), np.arange(len(self.log_sigmas))))
        else:
            ts = float(np.interp(math.log(sigma), self.log_sigmas, np.arange(len(self.log_sigmas))))
        return float(round(ts)) if self.quantize else ts

    def prior_scale(self, t: float) -> float:
        return math.sqrt(1.0 + t * t) if self.start_noise == "vp" else t

    # -- the network's prediction ------------------------------------------------------------------
    def predict(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        """The raw network output at x (sigma coordinates) and sigma t: net(x_vp, timestep(t))."""
        return self.call(x / math.sqrt(1.0 + t * t), self.timestep(t), **net_kwargs)

    def x0_from(self, out: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        """The predicted x_0 in a network output `out` at (x, t), before clipping."""
        raise NotImplementedError

    def eps_from(self, out: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        """The predicted eps in a network output `out` at (x, t), before clipping."""
        raise NotImplementedError

    @property
    def clips(self) -> bool:
        return self.thresholding or self.clip_sample

    def clip(self, x0: torch.Tensor) -> torch.Tensor:
        """x_0 thresholded (if `thresholding`) or clamped to +-clip_sample_range (if `clip_sample`), as diffusers."""
        if self.thresholding:
            return threshold_x0(x0, self.dynamic_thresholding_ratio, self.sample_max_value)
        return x0.clamp(-self.clip_sample_range, self.clip_sample_range) if self.clip_sample else x0

    # -- quantities: a sigma field has velocity = eps = (x - D) / sigma ---------------------------
    def denoise(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        return self.clip(self.x0_from(self.predict(x, t, **net_kwargs), x, t))

    def velocity(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        out = self.predict(x, t, **net_kwargs)
        if not self.clips:
            return self.eps_from(out, x, t)
        return (x - self.clip(self.x0_from(out, x, t))) / t

    def eps(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        return self.velocity(x, t, **net_kwargs)

    def denoise_and_raw_eps(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(clipped x_0, the network's own eps before clipping) from one call: the pair diffusers' DDIM steps with
        by default (use_clipped_model_output=False)."""
        out = self.predict(x, t, **net_kwargs)
        return self.clip(self.x0_from(out, x, t)), self.eps_from(out, x, t)
