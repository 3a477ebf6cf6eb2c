"""The allowlist of samplers: config names -> classes; `build` and `from_state`.
The names live in `samplers.names.SAMPLERS` (torch-free): a new integrator is its own module plus one line there."""

from __future__ import annotations

from typing import Any

from . import names
from .base import Sampler, SamplerStateError, check_params

SAMPLERS: dict[str, type[Sampler]] = names.resolve(names.SAMPLERS, "name")
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
