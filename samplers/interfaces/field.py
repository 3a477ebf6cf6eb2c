"""`Field`: a raw network seen as the quantities integrators need.

Every interface describes a forward process x_t = alpha(t) x_0 + sigma(t) eps at the
integrator's time t (a Python float) and evaluates, from one network call:
  velocity  dx/dt of the probability-flow ODE,     denoise  E[x_0 | x_t],
  score     grad log p_t(x) = -E[eps | x_t] / sigma(t),
  sde_drift  drift of the reverse SDE  v - beta(t)/2 * score,  whose noise is sqrt(beta |dt|).
Any beta(t) >= 0 keeps the marginals of p_t (the Langevin part it adds is stationary);
`diffusion(t)` returns each interface's choice. Conversions between the quantities are
affine in the network output, so guidance may mix any of them (k-diffusion's model protocol,
Karras et al. 2022, Sec. 2-4).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch


class Field:
    """Base class of interfaces; subclasses define the process and one native prediction."""

    interface: ClassVar[str]
    t_max_allowed: ClassVar[float] = float("inf")

    def __init__(self, net: Any, *, dtype: torch.dtype | None = None) -> None:
        self.net = net
        self.dtype = dtype  # network dtype (e.g. torch.float16); None = the integrator's

    # -- the forward process x_t = alpha(t) x_0 + sigma(t) eps ------------------------------
    def alpha(self, t: float) -> float:
        return 1.0

    def sigma(self, t: float) -> float:
        return t

    def dalpha(self, t: float) -> float:
        return 0.0

    def dsigma(self, t: float) -> float:
        return 1.0

    def half_log_snr(self, t: float) -> float:
        """lambda(t) = log(alpha(t) / sigma(t)), half the log-SNR (Lu et al. 2022); -inf where alpha = 0,
        +inf where sigma = 0. Increases as t decreases to the data end."""
        alpha, sigma = self.alpha(t), self.sigma(t)
        if alpha == 0.0 or sigma == 0.0:
            return -math.inf if alpha == 0.0 else math.inf
        return math.log(alpha / sigma)

    def prior_scale(self, t: float) -> float:
        """Standard deviation of the start noise at t (x_T = prior_scale(T) * eps)."""
        return self.sigma(t)

    def diffusion(self, t: float) -> float:
        """beta(t): squared diffusion coefficient of the reverse SDE."""
        return 2.0 * self.sigma(t) * self.dsigma(t)

    # -- the network --------------------------------------------------------------------------
    def call(self, x: torch.Tensor, *times: float | torch.Tensor, **net_kwargs: Any) -> torch.Tensor:
        """net(x, *times, **net_kwargs) with per-sample time tensors, in the network dtype."""
        dtype = self.dtype or x.dtype
        vecs = [
            t.to(x.device, dtype) if isinstance(t, torch.Tensor) else x.new_full((x.shape[0],), t, dtype=dtype)
            for t in times
        ]
        # Hot path (new_full above is cheaper than torch.full(device=...)); a no-op .to() still costs a
        # dispatch, so cast only when the dtype differs.
        out = self.net(x if x.dtype == dtype else x.to(dtype), *vecs, **net_kwargs)
        return out if out.dtype == x.dtype else out.to(x.dtype)

    # -- quantities (subclasses override the native one(s)) --------------------------------
    def velocity(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        """dx/dt of the probability-flow ODE, shaped like x."""
        raise NotImplementedError

    def _det(self, t: float) -> float:
        return self.alpha(t) * self.dsigma(t) - self.sigma(t) * self.dalpha(t)

    def denoise(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        """E[x_0 | x_t], shaped like x."""
        v = self.velocity(x, t, **net_kwargs)
        dsigma, det = self.dsigma(t), self._det(t)
        # Multiplying or dividing by 1.0 is exact, so skipping it (flow: dsigma = det = 1) changes no bit.
        x0 = (x if dsigma == 1.0 else dsigma * x) - self.sigma(t) * v
        return x0 if det == 1.0 else x0 / det

    def eps(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        """E[eps | x_t], shaped like x."""
        v = self.velocity(x, t, **net_kwargs)
        return (self.alpha(t) * v - self.dalpha(t) * x) / self._det(t)

    def score(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        """grad_x log p_t(x), shaped like x (t > 0)."""
        return self.eps(x, t, **net_kwargs) / -self.sigma(t)

    def sde_drift(self, x: torch.Tensor, t: float, **net_kwargs: Any) -> torch.Tensor:
        """Reverse-SDE drift v - beta/2 * score from one network call (t > 0)."""
        v = self.velocity(x, t, **net_kwargs)
        alpha, dalpha, det = self.alpha(t), self.dalpha(t), self._det(t)
        # eps = (alpha v - dalpha x) / det, skipping a multiply by 1, a subtraction of 0 * x and a division by 1
        # (sigma fields: all three): the same bits for finite x, except eps = -0.0 instead of +0.0 where v = -0.0
        # and x < 0. Two tensor ops instead of six on the edm field.
        eps = v if alpha == 1.0 else alpha * v
        if dalpha != 0.0:
            eps = eps - dalpha * x
        if det != 1.0:
            eps = eps / det
        return v + (0.5 * self.diffusion(t) / self.sigma(t)) * eps

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.net).__name__})"
