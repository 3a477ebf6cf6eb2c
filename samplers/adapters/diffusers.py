"""diffusers DDPM-trained models (e.g. `UNet2DModel`) through the `vp_eps` / `vp_v` / `vp_x0` interfaces.

    from diffusers import DDPMScheduler, UNet2DModel
    unet = UNet2DModel.from_pretrained(local_dir, subfolder="unet")
    field = wrap_diffusers_unet(unet, DDPMScheduler.from_pretrained(local_dir, subfolder="scheduler"))
    x = samplers.build("dpmpp_2m", steps=25, time_dist="karras",
                       time_kwargs={"sigma_min": field.sigma_min, "sigma_max": field.sigma_max}).sample(...)

The field calls `unet(x_vp, timestep, class_labels=...).sample` with x_vp = x / sqrt(1 + sigma^2) and the
(fractional, unless quantize=True) training timestep of sigma, under the DDPM training schedule of the
scheduler's config (num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas; diffusers' names);
its prediction_type picks the interface. To reproduce the scheduler's own sampling loop instead (its grid,
clipping and start noise), use `diffusers_schedule.diffusers_settings(scheduler)`:

    s = diffusers_settings(scheduler)
    field = samplers.wrap(DiffusersNet(unet, s.timestep_scale), s.interface, **s.interface_kwargs)
    sampler = samplers.build(s.sampler, steps=50, time_dist=s.time_dist, time_kwargs=s.time_kwargs, **s.sampler_kwargs)

Nothing here imports diffusers: the model is duck-typed (its output has `.sample`), so this module is torch-only
and diffusers is needed only to build the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..interfaces import VPField, ddpm_alphas_cumprod, wrap
from .diffusers_schedule import PREDICTIONS

# diffusers' DDPMScheduler defaults: the schedule of DDPM (Ho et al. 2020).
DDPM_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
}


class DiffusersNet(torch.nn.Module):
    """net(x, t, **kw) = model(x, t * timestep_scale, **kw).sample, the prediction half of a learned-variance output.
    timestep_scale: 1 for VP models (the field passes training timesteps); num_train_timesteps for flow models."""

    def __init__(self, model: torch.nn.Module, timestep_scale: float = 1.0) -> None:
        super().__init__()
        self.model, self.timestep_scale = model, float(timestep_scale)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, **net_kwargs: Any) -> torch.Tensor:
        """x: (N, C, ...), timestep: (N,) -> prediction (N, C, ...)."""
        if self.timestep_scale != 1.0:
            timestep = timestep * self.timestep_scale
        return eps_of(self.model(x, timestep=timestep, **net_kwargs).sample, x)  # SD3/Flux take timestep 4th


def eps_of(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The epsilon prediction in a model output: all of it, or the eps half of a learned-variance output."""
    if out.shape[1] == 2 * x.shape[1]:  # variance_type "learned" / "learned_range": [eps, variance]
        return out[:, : x.shape[1]]
    return out


def _config(scheduler: Any) -> dict[str, Any]:
    if scheduler is None:
        return {}
    if isinstance(scheduler, Mapping):
        return dict(scheduler)
    if hasattr(scheduler, "config"):
        return dict(scheduler.config)
    raise TypeError(f"scheduler must be a diffusers scheduler, its config dict, or None; got {type(scheduler).__name__}")


def ddpm_schedule(scheduler: Any = None, num_train_timesteps: int | None = None) -> np.ndarray:
    """abar_i, float64 [num_train_timesteps], of the training schedule in `scheduler`'s config
    (None: DDPM's defaults, with `num_train_timesteps` if given)."""
    cfg = {**DDPM_DEFAULTS, **({"num_train_timesteps": num_train_timesteps} if num_train_timesteps else {}),
           **_config(scheduler)}
    if cfg.get("rescale_betas_zero_snr"):
        raise ValueError("rescale_betas_zero_snr=True gives abar = 0 (sigma = inf) at the last timestep; not supported")
    return ddpm_alphas_cumprod(int(cfg["num_train_timesteps"]), float(cfg["beta_start"]), float(cfg["beta_end"]),
                               cfg["beta_schedule"], cfg.get("trained_betas"))


def wrap_diffusers_unet(model: torch.nn.Module, scheduler: Any = None, *, quantize: bool = False,
                        dtype: torch.dtype | None = None) -> VPField:
    """The field of a diffusers DDPM-trained model (e.g. `UNet2DModel`) under its training schedule: `vp_eps`,
    `vp_v` or `vp_x0` as the scheduler's prediction_type says (epsilon, v_prediction, sample).

    scheduler: a diffusers scheduler, its config dict, or None (DDPM's linear 1e-4..0.02 schedule over the
    model config's num_train_timesteps, else 1000). Class labels reach the model as `class_labels`.
    dtype: the network dtype; default the model's parameter dtype.
    """
    config = getattr(model, "config", None)
    num_train_timesteps = getattr(config, "num_train_timesteps", None) if config is not None else None
    abar = ddpm_schedule(scheduler, num_train_timesteps)
    prediction_type = _config(scheduler).get("prediction_type", "epsilon")
    if prediction_type not in PREDICTIONS:
        raise ValueError(f"prediction_type {prediction_type!r} is not a DDPM prediction; allowed: "
                         f"{', '.join(PREDICTIONS)}")
    if dtype is None:
        dtype = next(model.parameters()).dtype
    field = wrap(DiffusersNet(model), PREDICTIONS[prediction_type], alphas_cumprod=abar, quantize=quantize, dtype=dtype)
    assert isinstance(field, VPField)
    return field
