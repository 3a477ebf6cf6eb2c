"""Every name samplers/ answers to, importable without torch: the tables that config checks and
`seedshard verify` read, and that the torch modules build their own tables from.

A new integrator is its module plus one line in `SAMPLERS`; a new interface, its module plus one line
in `INTERFACES` (`resolve` imports the classes and checks that each answers to its key).
"""

from __future__ import annotations

import importlib
from typing import Any

SAMPLERS: dict[str, str] = {  # config name -> "module:Class" inside samplers/
    "euler": "euler:EulerSampler",
    "heun": "heun:HeunSampler",
    "euler_maruyama": "euler_maruyama:EulerMaruyamaSampler",
    "euler_jump": "euler_jump:EulerJumpSampler",
    "dpmpp_2m": "dpmpp_2m:DPMSolverPP2MSampler",
    "edm_stochastic": "edm_stochastic:EDMStochasticSampler",
    "ddim": "ddim:DDIMSampler",
    "langevin": "langevin:LangevinSampler",
    "gaussian_noise": "gaussian_noise:GaussianNoiseSampler",
}

INTERFACES: dict[str, str] = {  # model interface -> "module:Class" of its field
    "flow": "interfaces.flow:FlowField",
    "edm": "interfaces.edm:EDMField",
    "vp_eps": "interfaces.vp_eps:VPEpsField",
    "vp_v": "interfaces.vp_v:VPVField",
    "vp_x0": "interfaces.vp_x0:VPX0Field",
    "meanflow": "interfaces.meanflow:MeanFlowField",
}

# How noise is made (samplers/noise/): each name a scheme module; new work uses the default, and an output
# keeps the scheme it was written with (its manifest's noise_scheme).
NOISE_SCHEME_NAMES = ("v1", "v2")
DEFAULT_NOISE_SCHEME = "v2"

STATE_DTYPES = ("float32", "float64")  # torch dtype names the integrator's state x may be kept in
NET_DTYPES = ("float32", "float16", "bfloat16")  # torch dtype names a wrapped network may run in (`wrap(dtype=)`)

REQUIRED = None  # a time_kwargs key without a default
DEFAULT_SAMPLING_TIME_KWARGS: dict[str, dict[str, Any]] = {  # time grid schedule -> its time_kwargs defaults
    "uniform": {"t_max": 1.0, "t_min": 0.0},
    "exponential": {"sigma_min": 0.002, "sigma_max": 80.0},
    "karras": {"sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0},
    "shift": {"shift": 3.0},
    "explicit": {"t": REQUIRED},
    "diffusers": {"scheduler_config": REQUIRED},
}


def resolve(table: dict[str, str], key_attr: str) -> dict[str, type]:
    """{name: class} for a table above (imports the modules); each class's `key_attr` must equal its name."""
    classes = {}
    for name, path in table.items():
        module, attr = path.split(":")
        cls = getattr(importlib.import_module(f".{module}", __package__), attr)
        if getattr(cls, key_attr) != name:
            raise ImportError(f"samplers.names: {path} has {key_attr} {getattr(cls, key_attr)!r}, registered as {name!r}")
        classes[name] = cls
    return classes


def state_problem(state: Any) -> str | None:
    """What is wrong with a saved sampler state as far as names tell (no torch): it must be a dict with a
    registered 'name' and a positive int 'version'. None when nothing; `from_state` also checks fields."""
    if not isinstance(state, dict):
        return f"a sampler state must be a dict, got {type(state).__name__}"
    if state.get("name") not in SAMPLERS:
        return f"unknown sampler {state.get('name')!r}; allowed: {', '.join(SAMPLERS)}"
    version = state.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return f"{state['name']}: version must be a positive int, got {version!r}"
    return None
