"""Shared oracle helpers: run an integrator on exact Gaussian-data fields, fit convergence orders."""

from __future__ import annotations

import numpy as np
import torch

import samplers
from samplers.analytic import GaussianData, GaussianNet

DATA = GaussianData(mu=0.5, s=0.8)
SIGMA_MAX = 80.0


def start_noise(n: int = 256, dim: int = 4, seed: int = 0) -> torch.Tensor:
    """Unit normal x_T / prior_scale, float64 (n, dim)."""
    return samplers.SampleNoise(seed, 0, n).start((dim,), torch.float64)


def endpoint_error(name: str, interface: str, steps: int, eps: torch.Tensor, **kwargs) -> float:
    """Max |x_0 - exact ODE endpoint| of `name` on the exact field of DATA."""
    if interface == "edm":
        kwargs.setdefault("time_dist", "karras")
        kwargs.setdefault("time_kwargs", {"sigma_max": SIGMA_MAX})
    sampler = samplers.build(name, steps=steps, dtype="float64", **kwargs)
    field = samplers.wrap(GaussianNet(interface, DATA.mu, DATA.s), interface)
    t_max = float(sampler.sample_t()[0])
    x_T = eps * field.prior_scale(t_max)
    out = sampler.integrate(field, x_T)
    exact = DATA.edm_map(x_T, t_max, 0.0) if interface == "edm" else DATA.flow_map(x_T, t_max, 0.0)
    return (out - exact).abs().max().item()


def fit_order(steps: list[int], errors: list[float]) -> float:
    """Slope of log(error) against log(steps): about -p for a method of order p."""
    return float(np.polyfit(np.log(steps), np.log(errors), 1)[0])


def convergence_order(name: str, interface: str, steps: list[int], **kwargs) -> tuple[float, list[float]]:
    eps = start_noise()
    errors = [endpoint_error(name, interface, n, eps, **kwargs) for n in steps]
    return fit_order(steps, errors), errors
