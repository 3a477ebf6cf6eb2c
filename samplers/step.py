"""`StepSampler`: the loop shared by every step integrator.

Conventions: integrator time t runs from t_max down to 0 on a float64 grid computed once
(`sample_t`); flow fields use t in [0, 1] with t = 1 noise, sigma fields use t = sigma. The
state x is kept in `dtype` (float32 or float64); only the network may run in lower precision.
A subclass writes `forward` (one step, reading like its paper) and, if its final step differs,
`last_step`; guidance, start noise, per-step noise, churn and time broadcasting live here once.
A multistep method sets `multistep = True` and its `forward` then also receives `carry`, a dict
that is fresh for each `integrate` call, where a step leaves what later steps need.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar, Literal

import torch

from .base import Sampler, SamplerStateError, check_params, checked_params, state_of
from .guidance import mix
from .interfaces import Field
from .noise import SampleNoise
from .schedules import resolve_time_kwargs, time_grid

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class StepSampler(Sampler):
    """Integrates a field from t_max to 0 over `steps` intervals of a named time grid."""

    stochastic: ClassVar[bool] = False  # draws per-step noise
    requires: ClassVar[type[Field]] = Field  # the field class this integrator needs
    multistep: ClassVar[bool] = False  # forward also receives carry= (a per-run dict), e.g. previous denoised

    def __init__(
        self,
        steps: int,
        time_dist: str = "uniform",
        time_kwargs: dict[str, float] | None = None,
        dtype: Literal["float32", "float64"] = "float32",
        guidance_interval: tuple[float, float] | None = None,
    ) -> None:
        check_params(type(self), dict(steps=steps, time_dist=time_dist, time_kwargs=time_kwargs, dtype=dtype,
                                      guidance_interval=guidance_interval))
        if steps < 1:
            raise SamplerStateError(f"{self.name}: steps must be >= 1, got {steps}")
        try:
            self.time_kwargs = resolve_time_kwargs(time_dist, time_kwargs)
        except ValueError as e:
            raise SamplerStateError(f"{self.name}: {e}") from None
        if guidance_interval is not None and not guidance_interval[0] < guidance_interval[1]:
            raise SamplerStateError(f"{self.name}: guidance_interval must be (lo, hi) with lo < hi, got {guidance_interval}")
        self.steps, self.time_dist, self.dtype = steps, time_dist, dtype
        self.guidance_interval = tuple(guidance_interval) if guidance_interval is not None else None

    # -- state -------------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        return state_of(self)

    def load(self, **state_dict: Any) -> "StepSampler":
        self.__init__(**checked_params(type(self), state_dict))
        return self

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    # -- time grid and guided field evaluations --------------------------------------------
    def sample_t(self, steps: int | None = None) -> torch.Tensor:
        """The time grid, float64 [steps + 1], from t_max down to 0."""
        return time_grid(self.time_dist, self.steps if steps is None else steps, **self.time_kwargs)

    def guided(self, quantity: str, net: Field, g_net: Field | None, guidance_scale: float,
               x: torch.Tensor, *times: float, **net_kwargs: Any) -> torch.Tensor:
        """`quantity` of the field, guided: guide + w (cond - guide); the guide is skipped at w = 1
        and outside `guidance_interval` (which is tested against the last time argument)."""
        out = getattr(net, quantity)(x, *times, **net_kwargs)
        if g_net is None or guidance_scale == 1.0:
            return out
        if self.guidance_interval is not None and not self.guidance_interval[0] <= times[-1] <= self.guidance_interval[1]:
            return out
        return mix(out, getattr(g_net, quantity)(x, *times, **net_kwargs), guidance_scale)

    def velocity(self, net: Field, x: torch.Tensor, t: float, g_net: Field | None = None,
                 guidance_scale: float = 1.0, **net_kwargs: Any) -> torch.Tensor:
        """Guided probability-flow ODE velocity dx/dt at t."""
        return self.guided("velocity", net, g_net, guidance_scale, x, t, **net_kwargs)

    # -- the integrator ---------------------------------------------------------------------
    def forward(self, net: Field, x: torch.Tensor, t_curr: float, t_next: float, g_net: Field | None = None,
                guidance_scale: float = 1.0, *, noise: Any = None, **net_kwargs: Any) -> torch.Tensor:
        """One step from t_curr to t_next; `noise(draw=0)` returns this step's N(0, I) draw like x."""
        raise NotImplementedError

    def churn(self, net: Field, x: torch.Tensor, t_curr: float, t_hat: float, eps: torch.Tensor) -> torch.Tensor:
        """Move x (N, ...) from t_curr up to t_hat >= t_curr along the forward process, with eps like x:
        x_hat = (alpha_hat / alpha) x + sqrt(sigma_hat^2 - (alpha_hat / alpha)^2 sigma^2) eps (alpha(t_curr) > 0).
        For sigma fields (alpha = 1) it is EDM's x + sqrt(t_hat^2 - t^2) eps (Karras et al. 2022, Alg. 2 line 6)."""
        ratio = net.alpha(t_hat) / net.alpha(t_curr)
        std = math.sqrt(net.sigma(t_hat) ** 2 - (ratio * net.sigma(t_curr)) ** 2)
        return ratio * x + std * eps

    def last_step(self, net: Field, x: torch.Tensor, t_curr: float, t_last: float, g_net: Field | None = None,
                  guidance_scale: float = 1.0, **net_kwargs: Any) -> torch.Tensor:
        """The final step to t_last = 0: an Euler step of the probability-flow ODE, no noise."""
        d_cur = self.velocity(net, x, t_curr, g_net, guidance_scale, **net_kwargs)
        return x + (t_last - t_curr) * d_cur

    def check_fields(self, net: Any, g_net: Any, t_max: float) -> None:
        """Clear errors for a raw module, an incompatible interface, or a grid outside its range."""
        for role, field in (("net", net), ("g_net", g_net)):
            if field is None and role == "g_net":
                continue
            if not isinstance(field, Field):
                raise TypeError(f"{self.name}: {role} must be a field from samplers.wrap(net, interface), "
                                f"got {type(field).__name__}")
            if not isinstance(field, self.requires):
                raise TypeError(f"{self.name} needs a {self.requires.interface!r} field "
                                f"(samplers.wrap(net, {self.requires.interface!r})), got {field.interface!r}")
            if t_max > field.t_max_allowed:
                raise ValueError(f"{self.name}: time grid starts at t={t_max:g} but the {field.interface!r} "
                                 f"interface allows t <= {field.t_max_allowed:g}; check time_dist/time_kwargs")
        if g_net is not None and type(g_net) is not type(net):
            raise TypeError(f"{self.name}: g_net interface {g_net.interface!r} differs from net's {net.interface!r}")

    def integrate(self, net: Field, x: torch.Tensor, *, g_net: Field | None = None, guidance_scale: float = 1.0,
                  noise: SampleNoise | None = None, **net_kwargs: Any) -> torch.Tensor:
        """Run the loop from x at t_max (already scaled by the prior) to t = 0; x: (N, ...)."""
        grid = self.sample_t().tolist()
        self.check_fields(net, g_net, grid[0])
        if self.stochastic and noise is None:
            raise ValueError(f"{self.name}.integrate needs noise= (a samplers.SampleNoise) for its per-step noise")
        x = x.to(self.torch_dtype)
        extra: dict[str, Any] = {"carry": {}} if self.multistep else {}
        for k in range(len(grid) - 2):
            step_noise = functools.partial(noise.step, k, x) if noise is not None else None
            x = self.forward(net, x, grid[k], grid[k + 1], g_net, guidance_scale, noise=step_noise, **extra,
                             **net_kwargs)
        return self.last_step(net, x, grid[-2], grid[-1], g_net, guidance_scale, **net_kwargs)

    def sample(self, N: int, device: torch.device | str, *, net: Field, shape: tuple[int, ...] | list[int],
               seed: int = 0, start_index: int = 0, labels: torch.Tensor | None = None, g_net: Field | None = None,
               guidance_scale: float = 1.0, net_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        """Samples for indices start_index .. start_index + N - 1 under `seed`: (N, *shape) in `dtype`.
        `labels` (N,) are passed to the network as `class_labels`."""
        noise = SampleNoise(seed, start_index, N, device)
        t_max = float(self.sample_t()[0])
        x = noise.start(tuple(shape), self.torch_dtype) * net.prior_scale(t_max)
        kwargs = dict(net_kwargs or {})
        if labels is not None:
            kwargs["class_labels"] = labels.to(device)
        return self.integrate(net, x, g_net=g_net, guidance_scale=guidance_scale, noise=noise, **kwargs)
