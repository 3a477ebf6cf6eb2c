"""`StepSampler`: the loop shared by every step integrator.

Conventions: integrator time t runs from t_max down to 0 on a float64 grid computed once
(`sample_t`); flow fields use t in [0, 1] with t = 1 noise, sigma fields use t = sigma. The
state x is kept in `dtype` (float32 or float64); only the network may run in lower precision.
`integrate` composes the network, the guide and the bound net_kwargs once into a `GuidedField`
and hands it to `forward` (one step, reading like its paper) and `last_step` as `net`; both also
receive `noise` (the step's draws) and `history`, a dict fresh for each `integrate` call where a
multistep method leaves what later steps need. Start noise, churn and the loop live here once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, Literal

import torch

from .base import Sampler, SamplerStateError
from .guidance import GuidedField
from .interfaces import Field
from .names import DEFAULT_NOISE_SCHEME, STATE_DTYPES
from .noise import NoiseProducer, SampleNoise
from .schedules import resolve_time_kwargs, time_grid

DTYPES = {name: getattr(torch, name) for name in STATE_DTYPES}


@dataclasses.dataclass(kw_only=True)
class StepSampler(Sampler):
    """Integrates a field from t_max to 0 over `steps` intervals of a named time grid."""

    steps: int
    time_dist: str = "uniform"
    time_kwargs: dict[str, Any] | None = None  # resolved: the schedule's defaults, overridden
    dtype: Literal[STATE_DTYPES] = "float32"
    guidance_interval: tuple[float, float] | None = None
    stochastic: bool = dataclasses.field(default=False, init=False, repr=False)  # draws per-step noise
    requires: ClassVar[type[Field]] = Field  # the field class this integrator needs

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1:
            raise SamplerStateError(f"{self.name}: steps must be >= 1, got {self.steps}")
        try:
            self.time_kwargs = resolve_time_kwargs(self.time_dist, self.time_kwargs)
        except ValueError as e:
            raise SamplerStateError(f"{self.name}: {e}") from None
        if self.guidance_interval is not None:
            if not self.guidance_interval[0] < self.guidance_interval[1]:
                raise SamplerStateError(f"{self.name}: guidance_interval must be (lo, hi) with lo < hi, "
                                        f"got {self.guidance_interval}")
            self.guidance_interval = tuple(self.guidance_interval)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def sample_t(self, steps: int | None = None) -> torch.Tensor:
        """The time grid, float64 [steps + 1], from t_max down to 0."""
        return time_grid(self.time_dist, self.steps if steps is None else steps, **self.time_kwargs)

    # -- the integrator ---------------------------------------------------------------------
    def forward(self, net: GuidedField, x: torch.Tensor, t_curr: float, t_next: float, *, noise: Any = None,
                history: dict[str, Any] | None = None) -> torch.Tensor:
        """One step of x (N, ...) from t_curr to t_next; `noise(draw=0)` returns this step's N(0, I) draw like x."""
        raise NotImplementedError

    def churn(self, net: Field, x: torch.Tensor, t_curr: float, t_hat: float, eps: torch.Tensor) -> torch.Tensor:
        """Move x (N, ...) from t_curr up to t_hat >= t_curr along the forward process, with eps like x:
        x_hat = (alpha_hat / alpha) x + sqrt(sigma_hat^2 - (alpha_hat / alpha)^2 sigma^2) eps (alpha(t_curr) > 0).
        For sigma fields (alpha = 1) it is EDM's x + sqrt(t_hat^2 - t^2) eps (Karras et al. 2022, Alg. 2 line 6)."""
        ratio = net.alpha(t_hat) / net.alpha(t_curr)
        std = math.sqrt(net.sigma(t_hat) ** 2 - (ratio * net.sigma(t_curr)) ** 2)
        return (x if ratio == 1.0 else ratio * x) + std * eps  # 1.0 * x is x, bit for bit: skipped on sigma fields

    def last_step(self, net: GuidedField, x: torch.Tensor, t_curr: float, t_last: float, *, noise: Any = None,
                  history: dict[str, Any] | None = None) -> torch.Tensor:
        """The final step to t_last = 0: an Euler step of the probability-flow ODE, no noise."""
        d_cur = net.velocity(x, t_curr)
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
                  noise: SampleNoise | NoiseProducer | None = None, guide_kwargs: dict[str, Any] | None = None,
                  **net_kwargs: Any) -> torch.Tensor:
        """Run the loop from x at t_max (already scaled by the prior) to t = 0; x: (N, ...).
        `noise` gives step k's draws as `noise.step(k, x, draw)` (a NoiseProducer gives the same bits, drawn ahead);
        the guide sees `net_kwargs` updated by `guide_kwargs` (e.g. negative prompt embeddings)."""
        grid = self.sample_t().tolist()
        self.check_fields(net, g_net, grid[0])
        if self.stochastic and noise is None:
            raise ValueError(f"{self.name}.integrate needs noise= (a samplers.SampleNoise) for its per-step noise")
        guided = GuidedField(net, g_net, guidance_scale, interval=self.guidance_interval, net_kwargs=net_kwargs,
                             guide_kwargs=guide_kwargs)
        x = x.to(self.torch_dtype)
        history: dict[str, Any] = {}
        for k in range(len(grid) - 1):
            step = self.forward if k < len(grid) - 2 else self.last_step
            step_noise = functools.partial(noise.step, k, x) if noise is not None else None
            x = step(guided, x, grid[k], grid[k + 1], noise=step_noise, history=history)
        return x

    def sample(self, N: int, device: torch.device | str, *, net: Field, shape: tuple[int, ...] | list[int],
               seed: int = 0, start_index: int = 0, labels: torch.Tensor | None = None, g_net: Field | None = None,
               guidance_scale: float = 1.0, net_kwargs: dict[str, Any] | None = None,
               guide_kwargs: dict[str, Any] | None = None, noise_scheme: str = DEFAULT_NOISE_SCHEME) -> torch.Tensor:
        """Samples for indices start_index .. start_index + N - 1 under `seed`: (N, *shape) in `dtype`.
        `labels` (N,) are passed to the network as `class_labels`; the guide sees `net_kwargs` updated by
        `guide_kwargs`; `noise_scheme` names how every draw is made (a key of `NOISE_SCHEMES`; the one a job's
        outputs were written with)."""
        noise = SampleNoise(seed, start_index, N, device, scheme=noise_scheme)
        t_max = float(self.sample_t()[0])
        x = noise.start(tuple(shape), self.torch_dtype) * net.prior_scale(t_max)
        kwargs = dict(net_kwargs or {})
        if labels is not None:
            kwargs["class_labels"] = labels.to(device)
        return self.integrate(net, x, g_net=g_net, guidance_scale=guidance_scale, noise=noise, guide_kwargs=guide_kwargs,
                              **kwargs)
