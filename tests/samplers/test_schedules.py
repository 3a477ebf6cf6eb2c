import math

import pytest
import torch

from samplers.schedules import DEFAULT_SAMPLING_TIME_KWARGS, REQUIRED, resolve_time_kwargs, time_grid

DEFAULTED = [name for name, kw in DEFAULT_SAMPLING_TIME_KWARGS.items() if REQUIRED not in kw.values()]


def test_defaulted_schedules():
    assert DEFAULTED == ["uniform", "exponential", "karras", "shift"]


@pytest.mark.parametrize("time_dist", DEFAULTED)
@pytest.mark.parametrize("steps", [1, 2, 18])
def test_grid_has_steps_plus_one_decreasing_float64_points_ending_at_zero(time_dist, steps):
    grid = time_grid(time_dist, steps)
    assert grid.dtype == torch.float64 and grid.shape == (steps + 1,)
    assert grid[-1] == 0 and bool((grid[1:] < grid[:-1]).all())


def test_karras_matches_edm_formula():
    steps, lo, hi, rho = 18, 0.002, 80.0, 7.0
    grid = time_grid("karras", steps, sigma_min=lo, sigma_max=hi, rho=rho)
    for i in range(steps):  # Karras et al. 2022, Eq. 5
        expected = (hi ** (1 / rho) + i / (steps - 1) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        assert math.isclose(grid[i].item(), expected, rel_tol=1e-14)
    assert grid[0] == hi and math.isclose(grid[-2].item(), lo, rel_tol=1e-12)


def test_exponential_is_log_uniform():
    grid = time_grid("exponential", 5, sigma_min=0.01, sigma_max=100.0)
    assert torch.allclose(grid[:-1].log10(), torch.tensor([2.0, 1.0, 0.0, -1.0, -2.0], dtype=torch.float64))


def test_uniform_and_shift():
    assert torch.equal(time_grid("uniform", 4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    assert torch.equal(time_grid("uniform", 2, t_max=1.0, t_min=0.5), torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))
    grid = time_grid("shift", 4, shift=3.0)
    assert math.isclose(grid[2].item(), 3 * 0.5 / (1 + 2 * 0.5))
    assert torch.equal(time_grid("shift", 4, shift=1.0), time_grid("uniform", 4))


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        (("uniform", 0), {}, "steps must be an int >= 1"),
        (("cosine", 4), {}, "unknown time_dist 'cosine'; allowed: uniform, exponential, karras, shift, explicit, diffusers"),
        (("karras", 4), {"t_max": 1.0}, r"not used by 'karras'; allowed: sigma_min, sigma_max, rho"),
        (("karras", 4), {"sigma_min": 5.0, "sigma_max": 1.0}, "0 < sigma_min < sigma_max"),
        (("uniform", 4), {"t_min": 1.0}, "0 <= t_min < t_max"),
        (("shift", 4), {"shift": 0.0}, "positive"),
        (("explicit", 2), {}, r"time_dist 'explicit' needs time_kwargs \['t'\]"),
        (("explicit", 2), {"t": 3.0}, "t must be a non-empty list of numbers, got 3.0"),
        (("explicit", 2), {"t": [2.0, True]}, "t must be a non-empty list of numbers"),
        (("explicit", 2), {"t": [2.0, float("nan")]}, "finite, >= 0 and start above 0"),
        (("explicit", 2), {"t": [2.0, -1.0]}, "finite, >= 0 and start above 0"),
        (("explicit", 2), {"t": [0.0]}, "start above 0"),
        (("explicit", 2), {"t": [2.0, 2.0, 0.0]}, r"strictly decreasing, got \[2.0, 2.0, 0.0\]"),
        (("explicit", 3), {"t": [2.0, 1.0, 0.0]}, r"t has 2 intervals \(ending at 0\) but steps=3"),
        (("diffusers", 2), {}, r"needs time_kwargs \['scheduler_config'\]"),
        (("diffusers", 2), {"scheduler_config": {"_class_name": "PNDMScheduler"}}, "PNDMScheduler.* not reproduced"),
    ],
)
def test_bad_grids_are_clear_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        time_grid(*args, **kwargs)


def test_explicit_grid_is_the_given_times():
    t = [14.6, 8.1, 2.0, 0.3, 0.0]
    assert torch.equal(time_grid("explicit", 4, t=t), torch.tensor(t, dtype=torch.float64))
    # Without a final 0 it is appended, as the other schedules end at 0: steps counts that last interval.
    assert torch.equal(time_grid("explicit", 3, t=[3, 2, 1]), torch.tensor([3.0, 2.0, 1.0, 0.0], dtype=torch.float64))
    assert torch.equal(time_grid("explicit", 1, t=torch.tensor([0.5])), torch.tensor([0.5, 0.0], dtype=torch.float64))
    # The resolved kwargs are plain JSON floats, as they are stored in a sampler's state.
    assert resolve_time_kwargs("explicit", {"t": (3, 2)}) == {"t": [3.0, 2.0]}
