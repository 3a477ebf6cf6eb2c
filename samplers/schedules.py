"""Time grids: `steps + 1` float64 points from t_max down to exactly 0.

t is the integrator's time: flow time in [0, 1] for `flow`/`meanflow` fields, sigma for
`edm`/`vp_eps` fields. Every grid ends at 0; a schedule whose own end point is above 0
(sigma_min, or t_min > 0) places it second to last, so the final interval goes to 0 as in EDM.
"""

from __future__ import annotations

import math
from typing import Any

import torch

DEFAULT_SAMPLING_TIME_KWARGS: dict[str, dict[str, float]] = {
    "uniform": {"t_max": 1.0, "t_min": 0.0},
    "exponential": {"sigma_min": 0.002, "sigma_max": 80.0},
    "karras": {"sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0},
    "shift": {"shift": 3.0},
}
TIME_DISTS = tuple(DEFAULT_SAMPLING_TIME_KWARGS)


def resolve_time_kwargs(time_dist: str, time_kwargs: dict[str, Any] | None) -> dict[str, float]:
    """Defaults of `time_dist` overridden by `time_kwargs`; unknown names and bad values are errors."""
    if time_dist not in DEFAULT_SAMPLING_TIME_KWARGS:
        raise ValueError(f"unknown time_dist {time_dist!r}; allowed: {', '.join(TIME_DISTS)}")
    defaults = DEFAULT_SAMPLING_TIME_KWARGS[time_dist]
    unknown = sorted(set(time_kwargs or {}) - set(defaults))
    if unknown:
        raise ValueError(f"time_kwargs {unknown} not used by {time_dist!r}; allowed: {', '.join(defaults)}")
    kw = {**defaults, **{k: float(v) for k, v in (time_kwargs or {}).items()}}
    if not all(math.isfinite(v) for v in kw.values()):
        raise ValueError(f"time_kwargs must be finite, got {kw}")
    if time_dist == "uniform" and not 0.0 <= kw["t_min"] < kw["t_max"]:
        raise ValueError(f"uniform needs 0 <= t_min < t_max, got t_min={kw['t_min']}, t_max={kw['t_max']}")
    if "sigma_min" in kw and not 0.0 < kw["sigma_min"] < kw["sigma_max"]:
        raise ValueError(
            f"{time_dist} needs 0 < sigma_min < sigma_max, got sigma_min={kw['sigma_min']}, sigma_max={kw['sigma_max']}"
        )
    if kw.get("rho", 1.0) <= 0 or kw.get("shift", 1.0) <= 0:
        raise ValueError(f"{time_dist} needs a positive rho/shift, got {kw}")
    return kw


def time_grid(time_dist: str, steps: int, **time_kwargs: float) -> torch.Tensor:
    """The grid t_0 > t_1 > ... > t_steps = 0, float64, shape [steps + 1]."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    kw = resolve_time_kwargs(time_dist, time_kwargs)
    f64 = dict(dtype=torch.float64)
    zero = torch.zeros(1, **f64)
    if time_dist == "uniform":
        if kw["t_min"] == 0.0:
            return torch.linspace(kw["t_max"], 0.0, steps + 1, **f64)
        return torch.cat([torch.linspace(kw["t_max"], kw["t_min"], steps, **f64), zero])
    if time_dist == "shift":
        # Time shift of Esser et al. 2024 (SD3), applied to a uniform grid: t' = s t / (1 + (s - 1) t).
        u = torch.linspace(1.0, 0.0, steps + 1, **f64)
        return kw["shift"] * u / (1.0 + (kw["shift"] - 1.0) * u)
    lo, hi = kw["sigma_min"], kw["sigma_max"]
    if steps == 1:
        return torch.tensor([hi, 0.0], **f64)
    ramp = torch.linspace(0.0, 1.0, steps, **f64)
    if time_dist == "exponential":
        sigmas = torch.exp(math.log(hi) + ramp * (math.log(lo) - math.log(hi)))
    else:  # karras: Karras et al. 2022, Eq. 5
        rho = kw["rho"]
        sigmas = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    return torch.cat([sigmas, zero])
