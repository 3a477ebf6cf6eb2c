"""Time grids: `steps + 1` float64 points from t_max down to exactly 0.

t is the integrator's time: flow time in [0, 1] for `flow`/`meanflow` fields, sigma for
`edm`/`vp_*` fields. Every grid ends at 0; a schedule whose own end point is above 0
(sigma_min, or t_min > 0) places it second to last, so the final interval goes to 0 as in EDM.

Two schedules take their points from elsewhere (their time_kwargs are JSON lists / dicts, not numbers):
  explicit   {t: [t_0, t_1, ...]}: the given times, strictly decreasing, finite, >= 0; a list that does not end
             at 0 gets 0 appended, so `steps` = len(t) - 1, or len(t) when 0 is appended.
  diffusers  {scheduler_config: a dict or a local path}: the times of a diffusers scheduler's own `steps`-step run
             (`samplers.adapters.diffusers_schedule`); a path is read once and stored as its effective config dict.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .adapters.diffusers_schedule import diffusers_grid, scheduler_config
from .names import DEFAULT_SAMPLING_TIME_KWARGS, REQUIRED

TIME_DISTS = tuple(DEFAULT_SAMPLING_TIME_KWARGS)


def explicit_times(t: Any) -> list[float]:
    """The `explicit` schedule's list, checked: finite, >= 0, strictly decreasing, at least one point above 0."""
    if isinstance(t, torch.Tensor):
        t = t.tolist()
    if not isinstance(t, (list, tuple)) or not t or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in t):
        raise ValueError(f"explicit: t must be a non-empty list of numbers, got {t!r}")
    times = [float(v) for v in t]
    if not all(math.isfinite(v) and v >= 0 for v in times) or times[0] <= 0:
        raise ValueError(f"explicit: t must be finite, >= 0 and start above 0, got {times}")
    if any(b >= a for a, b in zip(times, times[1:])):
        raise ValueError(f"explicit: t must be strictly decreasing, got {times}")
    return times


def resolve_time_kwargs(time_dist: str, time_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults of `time_dist` overridden by `time_kwargs`; unknown names and bad values are errors."""
    if time_dist not in DEFAULT_SAMPLING_TIME_KWARGS:
        raise ValueError(f"unknown time_dist {time_dist!r}; allowed: {', '.join(TIME_DISTS)}")
    defaults = DEFAULT_SAMPLING_TIME_KWARGS[time_dist]
    numeric = REQUIRED not in defaults.values()  # every schedule but explicit/diffusers takes plain numbers
    bad = {k: v for k, v in (time_kwargs or {}).items() if isinstance(v, bool) or not isinstance(v, (int, float))}
    if numeric and bad:
        raise ValueError(f"time_kwargs must be numbers for {time_dist!r}, got {bad}")
    unknown = sorted(set(time_kwargs or {}) - set(defaults))
    if unknown:
        raise ValueError(f"time_kwargs {unknown} not used by {time_dist!r}; allowed: {', '.join(defaults)}")
    missing = sorted(k for k, v in defaults.items() if v is REQUIRED and k not in (time_kwargs or {}))
    if missing:
        raise ValueError(f"time_dist {time_dist!r} needs time_kwargs {missing}")
    if time_dist == "explicit":
        return {"t": explicit_times(time_kwargs["t"])}
    if time_dist == "diffusers":
        return {"scheduler_config": scheduler_config(time_kwargs["scheduler_config"])}
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


def time_grid(time_dist: str, steps: int, **time_kwargs: Any) -> torch.Tensor:
    """The grid t_0 > t_1 > ... > t_steps = 0, float64, shape [steps + 1]."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    kw = resolve_time_kwargs(time_dist, time_kwargs)
    f64 = dict(dtype=torch.float64)
    zero = torch.zeros(1, **f64)
    if time_dist == "explicit":
        grid = torch.tensor(kw["t"], **f64)
        grid = grid if grid[-1] == 0 else torch.cat([grid, zero])
        if len(grid) != steps + 1:
            raise ValueError(f"explicit: t has {len(grid) - 1} intervals (ending at 0) but steps={steps}")
        return grid
    if time_dist == "diffusers":
        return diffusers_grid(kw["scheduler_config"], steps)
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
