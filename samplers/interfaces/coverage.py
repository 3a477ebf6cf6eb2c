"""Whether a time grid covers the range a field's model was trained on: one line of warning, or None.

A grid starting at t_max draws x_T = prior_scale(t_max) * eps, pure noise. That is the marginal p_t only where the
data's share of it is negligible: with data of standard deviation `data_std` (0.5, EDM's sigma_data, for images in
[-1, 1]) the share is alpha^2 data_std^2 / (alpha^2 data_std^2 + sigma^2) at t_max. A vp_eps grid starting at
sigma = 1 of a 0.01..157 training range (the default `uniform` grid) leaves 20 % of the variance out and samples
garbage. VP models also have a lowest trained sigma: a grid stepping below it evaluates the network where it was not
trained (its timestep is clamped to 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .field import Field

MAX_DATA_SHARE = 0.01  # warn above 1 % of the start marginal's variance coming from the data


def grid_coverage_warning(field: Field, grid: Sequence[float] | torch.Tensor, *, data_std: float = 0.5) -> str | None:
    """One line when `grid` (t_max .. 0, as `time_grid` returns) covers only part of `field`'s trained range;
    None when it covers it."""
    times = [float(t) for t in grid]
    t_max, name = times[0], field.interface
    alpha2, sigma2 = (field.alpha(t_max) * data_std) ** 2, field.sigma(t_max) ** 2
    share = alpha2 / (alpha2 + sigma2)
    sigma_max, sigma_min = getattr(field, "sigma_max", None), getattr(field, "sigma_min", None)
    if share > MAX_DATA_SHARE:
        trained = f"; the model is trained up to t={sigma_max:.4g}" if sigma_max is not None else ""
        return (f"time grid starts at t={t_max:.4g}, where pure start noise leaves out {share:.0%} of the {name} "
                f"marginal's variance (data std {data_std:g}){trained}: start the grid higher (time_dist/time_kwargs)")
    lowest = min((t for t in times if t > 0), default=t_max)
    if sigma_min is not None and lowest < sigma_min * (1 - 1e-6):
        return (f"time grid steps down to t={lowest:.4g}, below the {name} model's lowest trained sigma "
                f"{sigma_min:.4g}: the network is evaluated there at timestep 0 (set sigma_min >= {sigma_min:.4g})")
    return None
