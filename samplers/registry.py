"""The allowlist of samplers: config names -> classes; `build` and `from_state`.
A new integrator is its own module plus one entry in `SAMPLERS` below."""

from __future__ import annotations

from typing import Any

from .base import Sampler, SamplerStateError, check_params
from .ddim import DDIMSampler
from .dpmpp_2m import DPMSolverPP2MSampler
from .edm_stochastic import EDMStochasticSampler
from .euler import EulerSampler
from .euler_jump import EulerJumpSampler
from .euler_maruyama import EulerMaruyamaSampler
from .gaussian_noise import GaussianNoiseSampler
from .heun import HeunSampler
from .langevin import LangevinSampler

SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls
    for cls in (
        EulerSampler, HeunSampler, EulerMaruyamaSampler, EulerJumpSampler, DPMSolverPP2MSampler,
        EDMStochasticSampler, DDIMSampler, LangevinSampler, GaussianNoiseSampler,
    )
}
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)


def sampler_class(name: Any) -> type[Sampler]:
    """The class registered as `name`; unknown names list the known ones."""
    if name not in SAMPLERS:
        raise SamplerStateError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLER_NAMES)}")
    return SAMPLERS[name]


def build(name: str, **kwargs: Any) -> Sampler:
    """A sampler by config name, e.g. build('heun', steps=18, time_dist='karras')."""
    cls = sampler_class(name)
    check_params(cls, kwargs)
    return cls(**kwargs)


def from_state(state: dict[str, Any]) -> Sampler:
    """Rebuild a sampler from `save()` output; the same state gives bit-identical samples."""
    if not isinstance(state, dict) or "name" not in state:
        raise SamplerStateError(f"a sampler state must be a dict with a 'name', got {type(state).__name__}")
    return sampler_class(state["name"]).from_state(state)
