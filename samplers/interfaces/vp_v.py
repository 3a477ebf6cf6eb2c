"""v-prediction DDPM models (Salimans & Ho 2022, "Progressive Distillation", Sec. 4): net(x_vp, timestep)
predicts v = sqrt(abar) eps - sqrt(1 - abar) x_0. With sqrt(abar) = 1 / sqrt(1 + sigma^2) and x = x_vp / sqrt(abar):
    x_0 = x / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) v,    eps = sigma / (1 + sigma^2) x + 1 / sqrt(1 + sigma^2) v.
t is sigma; the VP conventions are stated in `vp.py`."""

from __future__ import annotations

import math

import torch

from .vp import VPField


class VPVField(VPField):
    """`vp_v` interface (diffusers' prediction_type='v_prediction')."""

    interface = "vp_v"

    def x0_from(self, out: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        return x / (1.0 + t * t) - (t / math.sqrt(1.0 + t * t)) * out

    def eps_from(self, out: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        return (t / (1.0 + t * t)) * x + out / math.sqrt(1.0 + t * t)
