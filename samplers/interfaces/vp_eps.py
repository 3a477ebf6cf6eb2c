"""Epsilon-prediction DDPM models (Ho et al. 2020): net(x_vp, timestep) predicts eps. t is sigma; the VP
conventions (coordinates, timestep map, clipping, start noise) are stated in `vp.py`."""

from __future__ import annotations

import torch

from .vp import VPField


class VPEpsField(VPField):
    """`vp_eps` interface: x_0 = x - sigma eps; exposes sigma_min / sigma_max."""

    interface = "vp_eps"

    def x0_from(self, out: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        return x - t * out

    def eps_from(self, out: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        return out
