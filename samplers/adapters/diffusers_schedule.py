"""diffusers scheduler configs as seedshard time grids and settings (imports nothing from diffusers).

A scheduler's `scheduler_config.json` fixes what a sampling run with it depends on: the training table, the
timesteps of a `steps`-step run (timestep_spacing, steps_offset, use_karras_sigmas, ...), the start-noise scale and
the clipping of the predicted x_0. `diffusers_grid(config, steps)` computes that run's times in the integrator's
convention (sigma for the VP schedulers, flow t for FlowMatchEulerDiscreteScheduler) with diffusers' own arithmetic
(float32 training table, the same rounding), and `diffusers_settings(config)` names the interface, its kwargs and the
sampler that reproduce the scheduler's loop from the same start noise:

    DDIMScheduler (eta 0)                  -> ddim, eta=0       DDPMScheduler (fixed_small)  -> ddim, eta=1
    EulerDiscreteScheduler                 -> euler             DPMSolverMultistepScheduler  -> dpmpp_2m
    FlowMatchEulerDiscreteScheduler        -> euler on `flow`, the network called at timestep = t * num_train_timesteps
    prediction_type epsilon | v_prediction | sample             -> vp_eps | vp_v | vp_x0

Refused with a one-line error, because seedshard would not reproduce them: options outside the table `DEFAULTS`
allows (rescale_betas_zero_snr, other DPM-Solver orders and types, dynamic flow shifting, ...), and DDIM grids whose
step t -> t - N // steps does not land on the next timestep (timestep_spacing 'linspace'/'trailing' with steps not
dividing N). Where diffusers' last step stops above 0 (DDIM set_alpha_to_one=False, Euler final_sigmas_type=
'sigma_min') the grid ends at 0 as every seedshard grid does: the output is then the denoised estimate, which differs
from diffusers' by about sigma_min * noise. Checked against diffusers 0.42 (tests/samplers/test_diffusers_schedule.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..interfaces.vp import ddpm_alphas_cumprod

_VP = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", trained_betas=None,
           prediction_type="epsilon", rescale_betas_zero_snr=False, steps_offset=0)
_THRESHOLD = dict(thresholding=False, dynamic_thresholding_ratio=0.995, sample_max_value=1.0)
_SIGMA_SCHEDULES = dict(use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False)

# The keys each scheduler reads, with diffusers' defaults; the rest of a config is ignored.
DEFAULTS: dict[str, dict[str, Any]] = {
    "DDIMScheduler": {**_VP, **_THRESHOLD, "clip_sample": True, "clip_sample_range": 1.0, "set_alpha_to_one": True,
                      "timestep_spacing": "leading"},
    "DDPMScheduler": {**_VP, **_THRESHOLD, "clip_sample": True, "clip_sample_range": 1.0,
                      "variance_type": "fixed_small", "timestep_spacing": "leading"},
    "EulerDiscreteScheduler": {**_VP, **_SIGMA_SCHEDULES, "interpolation_type": "linear", "sigma_min": None,
                               "sigma_max": None, "timestep_spacing": "linspace", "timestep_type": "discrete",
                               "final_sigmas_type": "zero"},
    "DPMSolverMultistepScheduler": {**_VP, **_THRESHOLD, **_SIGMA_SCHEDULES, "solver_order": 2,
                                    "algorithm_type": "dpmsolver++", "solver_type": "midpoint",
                                    "lower_order_final": True, "euler_at_final": False, "use_lu_lambdas": False,
                                    "use_flow_sigmas": False, "final_sigmas_type": "zero",
                                    "lambda_min_clipped": -math.inf, "variance_type": None,
                                    "timestep_spacing": "linspace", "use_dynamic_shifting": False},
    "FlowMatchEulerDiscreteScheduler": {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False,
                                        "invert_sigmas": False, "shift_terminal": None, **_SIGMA_SCHEDULES,
                                        "stochastic_sampling": False},
}
SCHEDULERS = tuple(DEFAULTS)

# Options seedshard does not reproduce: key -> the values it accepts.
_ONLY: dict[str, dict[str, tuple[Any, ...]]] = {
    "DDIMScheduler": {},
    "DDPMScheduler": {"variance_type": ("fixed_small", "fixed_small_log")},
    "EulerDiscreteScheduler": {"interpolation_type": ("linear",), "timestep_type": ("discrete",),
                               "use_beta_sigmas": (False,)},
    "DPMSolverMultistepScheduler": {"solver_order": (2,), "algorithm_type": ("dpmsolver++",),
                                    "solver_type": ("midpoint",), "use_lu_lambdas": (False,),
                                    "use_flow_sigmas": (False,), "use_beta_sigmas": (False,),
                                    "final_sigmas_type": ("zero",), "use_dynamic_shifting": (False,),
                                    "variance_type": (None, "learned", "learned_range")},
    "FlowMatchEulerDiscreteScheduler": {"use_dynamic_shifting": (False,), "invert_sigmas": (False,),
                                        "use_karras_sigmas": (False,), "use_exponential_sigmas": (False,),
                                        "use_beta_sigmas": (False,), "stochastic_sampling": (False,)},
}
PREDICTIONS: dict[str, str] = {
    "epsilon": "vp_eps", "v_prediction": "vp_v", "sample": "vp_x0", "original_sample": "vp_x0",
}
_SPACINGS = ("linspace", "leading", "trailing")
SAMPLER_OF = {"DDIMScheduler": ("ddim", {"eta": 0.0}), "DDPMScheduler": ("ddim", {"eta": 1.0, "use_clipped_model_output": True}),
              "EulerDiscreteScheduler": ("euler", {}), "DPMSolverMultistepScheduler": ("dpmpp_2m", {}),
              "FlowMatchEulerDiscreteScheduler": ("euler", {})}


def scheduler_config(scheduler: Any) -> dict[str, Any]:
    """The effective config of a diffusers scheduler, its config dict, a `scheduler_config.json` path or a folder
    holding one (or a pipeline folder's `scheduler/`): `_class_name` plus every key `DEFAULTS` lists for that class
    (defaults filled in), as plain JSON. Unsupported classes and options are one-line errors."""
    if isinstance(scheduler, (str, os.PathLike)):
        path = os.fspath(scheduler)
        for candidate in (path, os.path.join(path, "scheduler_config.json"),
                          os.path.join(path, "scheduler", "scheduler_config.json")):
            if os.path.isfile(candidate):
                with open(candidate) as f:
                    raw = json.load(f)
                break
        else:
            raise ValueError(f"scheduler_config {path!r}: no such file, nor a folder with scheduler_config.json")
    elif isinstance(scheduler, Mapping):
        raw = dict(scheduler)
    elif hasattr(scheduler, "config"):
        raw = {"_class_name": type(scheduler).__name__, **dict(scheduler.config)}
    else:
        raise TypeError(f"scheduler must be a diffusers scheduler, its config dict or a path to scheduler_config.json; "
                        f"got {type(scheduler).__name__}")
    name = raw.get("_class_name")
    if name not in DEFAULTS:
        raise ValueError(f"scheduler_config: _class_name {name!r} is not reproduced; allowed: {', '.join(SCHEDULERS)}")
    cfg = {"_class_name": name, **{k: raw.get(k, v) for k, v in DEFAULTS[name].items()}}
    if cfg.get("trained_betas") is not None:
        cfg["trained_betas"] = [float(b) for b in cfg["trained_betas"]]
    _check(cfg)
    return json.loads(json.dumps(cfg))  # plain JSON (tuples -> lists), as stored in sampler states


def _check(cfg: dict[str, Any]) -> None:
    name = cfg["_class_name"]
    allowed = {"rescale_betas_zero_snr": (False,), "prediction_type": tuple(PREDICTIONS), "timestep_spacing": _SPACINGS,
               **_ONLY[name]}
    for key, values in allowed.items():
        if key in cfg and cfg[key] not in values:
            raise ValueError(f"{name}: {key}={cfg[key]!r} is not reproduced by seedshard; allowed: "
                             f"{', '.join(map(repr, values))}")


# -- grids ---------------------------------------------------------------------------------------------------
def _abar(cfg: dict[str, Any]) -> np.ndarray:
    return ddpm_alphas_cumprod(cfg["num_train_timesteps"], cfg["beta_start"], cfg["beta_end"], cfg["beta_schedule"],
                               cfg["trained_betas"], table_dtype="float32")


def _sigma_table(abar: np.ndarray) -> np.ndarray:
    """sqrt((1 - abar) / abar) as diffusers computes it: float32, [N], increasing with the timestep."""
    a = torch.from_numpy(abar).float()
    return (((1 - a) / a) ** 0.5).numpy()


def _spaced_timesteps(cfg: dict[str, Any], steps: int) -> np.ndarray:
    """DDPM/DDIM's integer timesteps for `steps` (Lin et al. 2024, Table 2 spacings), int64, decreasing."""
    n, spacing = cfg["num_train_timesteps"], cfg["timestep_spacing"]
    if spacing == "linspace":
        return np.linspace(0, n - 1, steps).round()[::-1].copy().astype(np.int64)
    if spacing == "leading":
        return (np.arange(0, steps) * (n // steps)).round()[::-1].copy().astype(np.int64) + cfg["steps_offset"]
    return np.round(np.arange(n, 0, -n / steps)).astype(np.int64) - 1


def _karras(sigmas: np.ndarray, steps: int, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """diffusers' `_convert_to_karras`: Karras et al. 2022, Eq. 5 with rho = 7 between the ends of `sigmas`."""
    lo = lo if lo is not None else sigmas[-1].item()
    hi = hi if hi is not None else sigmas[0].item()
    ramp = np.linspace(0, 1, steps)
    return (hi ** (1 / 7.0) + ramp * (lo ** (1 / 7.0) - hi ** (1 / 7.0))) ** 7.0


def _exponential(sigmas: np.ndarray, steps: int, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    lo = lo if lo is not None else sigmas[-1].item()
    hi = hi if hi is not None else sigmas[0].item()
    return np.exp(np.linspace(math.log(hi), math.log(lo), steps))


def _ddim_sigmas(cfg: dict[str, Any], steps: int) -> np.ndarray:
    n, ts = cfg["num_train_timesteps"], _spaced_timesteps(cfg, steps)
    if ts.min() < 0 or ts.max() >= n:
        raise ValueError(f"{cfg['_class_name']}: steps={steps} with steps_offset={cfg['steps_offset']} gives timesteps "
                         f"outside 0..{n - 1}: {ts.tolist()}")
    if cfg["_class_name"] == "DDIMScheduler":  # DDIM steps from t to t - n // steps, whatever the next timestep is
        prev = ts - n // steps
        if not (np.array_equal(prev[:-1], ts[1:]) and prev[-1] < 0):
            raise ValueError(f"DDIMScheduler with timestep_spacing={cfg['timestep_spacing']!r} and steps={steps} steps "
                             f"from timestep t to t - {n // steps} but evaluates the next step elsewhere (timesteps "
                             f"{ts.tolist()}); not reproduced: use timestep_spacing='leading' or steps dividing {n}")
    abar = _abar(cfg)[ts]
    return np.sqrt((1 - abar) / abar)


def _euler_sigmas(cfg: dict[str, Any], steps: int) -> np.ndarray:
    if cfg["timestep_spacing"] == "linspace":
        ts = np.linspace(0, cfg["num_train_timesteps"] - 1, steps, dtype=np.float32)[::-1].copy()
    else:
        ts = _spaced_timesteps(cfg, steps).astype(np.float32)
    table = _sigma_table(_abar(cfg))
    sigmas = np.interp(ts, np.arange(0, len(table)), table)
    if cfg["use_karras_sigmas"]:
        sigmas = _karras(sigmas, steps, cfg["sigma_min"], cfg["sigma_max"])
    elif cfg["use_exponential_sigmas"]:
        sigmas = _exponential(sigmas, steps, cfg["sigma_min"], cfg["sigma_max"])
    return sigmas.astype(np.float32)


def _dpm_sigmas(cfg: dict[str, Any], steps: int) -> np.ndarray:
    n, abar = cfg["num_train_timesteps"], torch.from_numpy(_abar(cfg)).float()
    lambda_t = torch.log(torch.sqrt(abar)) - torch.log(torch.sqrt(1 - abar))
    last = n - int(torch.searchsorted(torch.flip(lambda_t, [0]), cfg["lambda_min_clipped"]))
    spacing = cfg["timestep_spacing"]
    if spacing == "linspace":
        ts = np.linspace(0, last - 1, steps + 1).round()[::-1][:-1].copy().astype(np.int64)
    elif spacing == "leading":
        ratio = last // (steps + 1)
        ts = (np.arange(0, steps + 1) * ratio).round()[::-1][:-1].copy().astype(np.int64) + cfg["steps_offset"]
    else:
        ts = np.arange(last, 0, -n / steps).round().copy().astype(np.int64) - 1
    table = _sigma_table(abar.double().numpy())
    if cfg["use_karras_sigmas"]:
        sigmas = _karras(np.flip(table).copy(), steps)
    elif cfg["use_exponential_sigmas"]:
        sigmas = _exponential(np.flip(table).copy(), steps)
    else:
        sigmas = np.interp(ts, np.arange(0, len(table)), table)
    return sigmas.astype(np.float32)


def _flow_times(cfg: dict[str, Any], steps: int) -> np.ndarray:
    n, shift = cfg["num_train_timesteps"], float(cfg["shift"])
    table = torch.from_numpy(np.linspace(1, n, n, dtype=np.float32)[::-1].copy()) / n
    table = shift * table / (1 + (shift - 1) * table)
    t = np.linspace(table[0].item() * n, table[-1].item() * n, steps) / n
    t = shift * t / (1 + (shift - 1) * t)  # Esser et al. 2024 (SD3) time shift
    if cfg["shift_terminal"]:
        one_minus = 1 - t
        with np.errstate(invalid="ignore", divide="ignore"):  # steps=1: 0 / 0, refused below
            t = 1 - one_minus / (one_minus[-1] / (1 - cfg["shift_terminal"]))
    return t.astype(np.float32)


def diffusers_grid(config: Any, steps: int) -> torch.Tensor:
    """The times of a `steps`-step run of the scheduler in `config` (see `scheduler_config`), float64 [steps + 1],
    decreasing to 0: sigmas for the VP schedulers, flow t for FlowMatchEulerDiscreteScheduler."""
    cfg = scheduler_config(config)
    name = cfg["_class_name"]
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if name != "FlowMatchEulerDiscreteScheduler" and steps > cfg["num_train_timesteps"]:
        raise ValueError(f"{name}: steps={steps} exceeds num_train_timesteps={cfg['num_train_timesteps']}")
    times = {"DDIMScheduler": _ddim_sigmas, "DDPMScheduler": _ddim_sigmas, "EulerDiscreteScheduler": _euler_sigmas,
             "DPMSolverMultistepScheduler": _dpm_sigmas, "FlowMatchEulerDiscreteScheduler": _flow_times}[name]
    grid = torch.from_numpy(np.append(np.asarray(times(cfg, steps), dtype=np.float64), 0.0))
    if not bool((grid[1:] < grid[:-1]).all()):  # also catches NaN (FlowMatch's shift_terminal with steps=1)
        raise ValueError(f"{name}: the grid for steps={steps} is not strictly decreasing: {grid.tolist()}")
    return grid


# -- settings ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DiffusersSettings:
    """What reproduces a diffusers scheduler: `samplers.wrap(net, interface, **interface_kwargs)` and
    `samplers.build(sampler, steps=..., time_dist=time_dist, time_kwargs=time_kwargs, **sampler_kwargs)`, with the
    raw network called at timestep = (the field's time argument) * timestep_scale."""

    interface: str
    interface_kwargs: dict[str, Any]
    sampler: str
    sampler_kwargs: dict[str, Any]
    time_dist: str
    time_kwargs: dict[str, Any]
    timestep_scale: float


def diffusers_settings(scheduler: Any) -> DiffusersSettings:
    """seedshard's interface, sampler and grid for a diffusers scheduler (object, config dict or path)."""
    cfg = scheduler_config(scheduler)
    name = cfg["_class_name"]
    sampler, sampler_kwargs = SAMPLER_OF[name]
    grid = dict(time_dist="diffusers", time_kwargs={"scheduler_config": cfg})
    if name == "FlowMatchEulerDiscreteScheduler":
        return DiffusersSettings("flow", {}, sampler, dict(sampler_kwargs), **grid,
                                 timestep_scale=float(cfg["num_train_timesteps"]))
    kw: dict[str, Any] = {k: cfg[k] for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule")}
    if cfg["trained_betas"] is not None:
        kw["trained_betas"] = cfg["trained_betas"]
    sigma_schedule = cfg.get("use_karras_sigmas") or cfg.get("use_exponential_sigmas")
    spacing = cfg["timestep_spacing"]
    if name == "EulerDiscreteScheduler":
        # Integer timesteps unless linspace spacing (sigma interpolated linearly) or karras/exponential sigmas
        # (timestep by log-sigma interpolation); init_noise_sigma is sqrt(sigma_max^2 + 1) only for 'leading'.
        kw.update(quantize=spacing != "linspace" and not sigma_schedule,
                  sigma_interp="linear" if spacing == "linspace" and not sigma_schedule else "log",
                  start_noise="vp" if spacing == "leading" else "sigma")
    else:
        # Integer timesteps (DPM-Solver rounds karras timesteps, except for the cosine schedule); init_noise_sigma = 1.
        cosine_karras = cfg.get("use_karras_sigmas") and cfg["beta_schedule"] == "squaredcos_cap_v2"
        quantize = not (cfg.get("use_exponential_sigmas") or cosine_karras)
        kw.update(quantize=quantize, sigma_interp="log", start_noise="vp")
    kw.update({k: cfg[k] for k in ("clip_sample", "clip_sample_range", *_THRESHOLD) if k in cfg})
    kw["table_dtype"] = "float32"
    return DiffusersSettings(PREDICTIONS[cfg["prediction_type"]], kw, sampler, dict(sampler_kwargs), **grid,
                             timestep_scale=1.0)
