"""Sample-prediction DDPM models: net(x_vp, timestep) predicts x_0 itself (diffusers' prediction_type='sample');
eps = (x - x_0) / sigma. t is sigma; the VP conventions are stated in `vp.py`."""

from __future__ import annotations

import torch

from .vp import VPField


class VPX0Field(VPField):
    """`vp_x0` interface: the network is the denoiser of the VP model."""

    interface = "vp_x0"

    def x0_from(self, out: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        return out

    def eps_from(self, out: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        return (x - out) / t
