"""EDM / variance-exploding: x = x_0 + sigma eps, t = sigma decreasing to 0; the network is a
denoiser D(x, sigma) (Karras et al. 2022). With `precond=True` it is a raw network F and
D = c_skip x + c_out F(c_in x, c_noise) with EDM's preconditioning (Table 1)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .field import Field


def edm_precond(sigma: float, sigma_data: float) -> tuple[float, float, float, float]:
    """(c_skip, c_out, c_in, c_noise) of Karras et al. 2022, Table 1."""
    s2, d2 = sigma * sigma, sigma_data * sigma_data
    return d2 / (s2 + d2), sigma * sigma_data / math.sqrt(s2 + d2), 1.0 / math.sqrt(s2 + d2), math.log(sigma) / 4


class EDMField(Field):
    """`edm` interface: velocity (x - D) / sigma, score (D - x) / sigma^2, beta = 2 sigma."""

    interface = "edm"

    def __init__(self, net: Any, *, sigma_data: float = 0.5, precond: bool = False, dtype: torch.dtype | None = None):
        super().__init__(net, dtype=dtype)
        self.sigma_data, self.precond = float(sigma_data), bool(precond)

    def denoise(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        if not self.precond:
            return self.call(x, t, **net_kwargs)
        c_skip, c_out, c_in, c_noise = edm_precond(t, self.sigma_data)
        return c_skip * x + c_out * self.call(c_in * x, c_noise, **net_kwargs)

    def velocity(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        return (x - self.denoise(x, t, **net_kwargs)) / t

    def eps(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        return self.velocity(x, t, **net_kwargs)
