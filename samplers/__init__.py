"""seedshard samplers: pure-torch ODE/SDE integrators for diffusion and flow-matching models.

    field = samplers.wrap(net, "flow")                    # or "edm", "vp_eps", "vp_v", "vp_x0", "meanflow"
    sampler = samplers.build("heun", steps=32)
    x = sampler.sample(16, "cpu", net=field, shape=(1, 8, 8), seed=0)
    samplers.from_state(sampler.save())                   # the same sampler, bit for bit

Imports nothing from ray, pyarrow, fsspec or pipeline. Names are imported on first use (module
`__getattr__`), so `import samplers` and `samplers.names` (every registered name) load no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {  # name -> module (relative to this package) that defines it
    "Sampler": ".base", "SamplerStateError": ".base",
    "DDIMSampler": ".ddim",
    "DPMSolverPP2MSampler": ".dpmpp_2m",
    "EDMStochasticSampler": ".edm_stochastic",
    "EulerSampler": ".euler",
    "EulerJumpSampler": ".euler_jump",
    "EulerMaruyamaSampler": ".euler_maruyama",
    "GaussianNoiseSampler": ".gaussian_noise",
    "GuidedField": ".guidance", "mix": ".guidance", "null_condition": ".guidance",
    "HeunSampler": ".heun",
    "LangevinSampler": ".langevin",
    **dict.fromkeys(["INTERFACES", "EDMField", "Field", "FlowField", "MeanFlowField", "VPEpsField", "VPVField",
                     "VPX0Field", "grid_coverage_warning", "wrap"], ".interfaces"),
    **dict.fromkeys(["DEFAULT_NOISE_SCHEME", "NOISE_SCHEMES", "NoiseProducer", "SampleNoise", "scheme_named"], ".noise"),
    **dict.fromkeys(["SAMPLER_NAMES", "SAMPLERS", "build", "from_state", "sampler_class"], ".registry"),
    **dict.fromkeys(["DEFAULT_SAMPLING_TIME_KWARGS", "TIME_DISTS", "time_grid"], ".schedules"),
    "StepSampler": ".step",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .base import Sampler, SamplerStateError
    from .ddim import DDIMSampler
    from .dpmpp_2m import DPMSolverPP2MSampler
    from .edm_stochastic import EDMStochasticSampler
    from .euler import EulerSampler
    from .euler_jump import EulerJumpSampler
    from .euler_maruyama import EulerMaruyamaSampler
    from .gaussian_noise import GaussianNoiseSampler
    from .guidance import GuidedField, mix, null_condition
    from .heun import HeunSampler
    from .interfaces import (
        INTERFACES, EDMField, Field, FlowField, MeanFlowField, VPEpsField, VPVField, VPX0Field, grid_coverage_warning,
        wrap,
    )
    from .langevin import LangevinSampler
    from .noise import DEFAULT_NOISE_SCHEME, NOISE_SCHEMES, NoiseProducer, SampleNoise, scheme_named
    from .registry import SAMPLER_NAMES, SAMPLERS, build, from_state, sampler_class
    from .schedules import DEFAULT_SAMPLING_TIME_KWARGS, TIME_DISTS, time_grid
    from .step import StepSampler


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
