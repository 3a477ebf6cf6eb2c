"""Exact fields for Gaussian data x_0 ~ N(mu, s^2) (i.i.d. per coordinate): an oracle.

For such data every field has a closed form, and so does the probability-flow ODE's map:
  edm  (x = x_0 + sigma eps):    D(x, sigma) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2),
       x(sigma_b) = mu + (x(sigma_a) - mu) * sqrt(s^2 + sigma_b^2) / sqrt(s^2 + sigma_a^2).
  flow (x_t = (1 - t) x_0 + t eps): m_t = (1 - t) mu, std_t^2 = (1 - t)^2 s^2 + t^2,
       v(x, t) = -mu + (t - (1 - t) s^2) / std_t^2 * (x - m_t),
       x(t_b) = m_b + (x(t_a) - m_a) * std_b / std_a.
  meanflow: u(x, r, t) = (x - x(r)) / (t - r), and u(x, t, t) = v(x, t).
The networks below follow the raw call conventions of each interface, so integrators can be
tested end to end against exact endpoints and convergence orders.
"""

from __future__ import annotations

import math

import torch


class GaussianData:
    """N(mu, s^2) data and its exact fields and ODE maps (tensors broadcast per sample)."""

    def __init__(self, mu: float = 0.5, s: float = 0.8) -> None:
        if not s > 0:
            raise ValueError(f"GaussianData: s must be > 0, got {s}")
        self.mu, self.s = float(mu), float(s)

    def _col(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return t.reshape(-1, *([1] * (x.dim() - 1))) if t.dim() else t

    # edm
    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        s2, sig2 = self.s**2, self._col(sigma, x) ** 2
        return (s2 * x + sig2 * self.mu) / (s2 + sig2)

    def edm_map(self, x: torch.Tensor, sigma_a: float, sigma_b: float) -> torch.Tensor:
        """Exact ODE solution carried from sigma_a to sigma_b."""
        return self.mu + (x - self.mu) * math.sqrt(self.s**2 + sigma_b**2) / math.sqrt(self.s**2 + sigma_a**2)

    # flow
    def flow_std(self, t: torch.Tensor | float) -> torch.Tensor | float:
        return ((1 - t) ** 2 * self.s**2 + t**2) ** 0.5

    def flow_velocity(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t = self._col(t, x)
        return -self.mu + (t - (1 - t) * self.s**2) / self.flow_std(t) ** 2 * (x - (1 - t) * self.mu)

    def flow_map(self, x: torch.Tensor, t_a: torch.Tensor | float, t_b: torch.Tensor | float) -> torch.Tensor:
        """Exact flow ODE solution carried from t_a to t_b."""
        t_a, t_b = self._col(t_a, x), self._col(t_b, x)
        return (1 - t_b) * self.mu + (x - (1 - t_a) * self.mu) * self.flow_std(t_b) / self.flow_std(t_a)

    def mean_velocity(self, x: torch.Tensor, r: torch.Tensor | float, t: torch.Tensor | float) -> torch.Tensor:
        """MeanFlow average velocity u(x, r, t) = (x - x(r)) / (t - r); v where r == t."""
        r_, t_ = self._col(r, x), self._col(t, x)
        gap = t_ - r_
        safe = torch.where(gap == 0, torch.ones_like(gap), gap)
        return torch.where(gap == 0, self.flow_velocity(x, t), (x - self.flow_map(x, t, r)) / safe)


class GaussianNet(torch.nn.Module):
    """A raw network with the exact field of N(mu, s^2) data under `interface`:
    edm -> D(x, sigma), flow -> v(x, t), meanflow -> u(x, r, t). Counts its calls."""

    def __init__(self, interface: str = "flow", mu: float = 0.5, s: float = 0.8) -> None:
        super().__init__()
        if interface not in ("edm", "flow", "meanflow"):
            raise ValueError(f"GaussianNet supports edm, flow, meanflow; got {interface!r}")
        self.interface, self.data, self.calls = interface, GaussianData(mu, s), 0

    def forward(self, x: torch.Tensor, *times: torch.Tensor, **net_kwargs: object) -> torch.Tensor:
        self.calls += 1
        if self.interface == "edm":
            return self.data.denoiser(x, times[0])
        if self.interface == "flow":
            return self.data.flow_velocity(x, times[0])
        return self.data.mean_velocity(x, times[0], times[1])
