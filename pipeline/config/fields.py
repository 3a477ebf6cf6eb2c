"""The building blocks of the job config schema: stated limits, name registries and strict models.

A name chosen from a list (sampler, interface, time_dist, format, stored dtype, network dtypes, FID
extractor, autocast dtype) is checked against the registry of the module that uses it, so the lists
are never copied here; the registries are imported only when a name is checked.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, PlainValidator

from .errors import fmt_value

_FACTORY_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")
_PICKLE_FACTORY = "pipeline.models.trusted_pickle:load"  # the one factory that unpickles (model.trust_pickle)

# Stated limits (README, "Limits"): what one job may ask for, so that a typo fails here instead of
# allocating a time grid of 10^12 points or a plan of 10^9 shards.
MAX_STEPS = 100_000
MAX_SHARDS = 100_000
MAX_SAMPLE_ELEMENTS = 2**28  # one sample of model.shape: 1 GiB in float32
MAX_CHECKPOINT_BYTES = 64 * 2**30  # default of model.max_checkpoint_bytes: read and unpacked size of a checkpoint


# --------------------------------------------------------------------------- registries
# One function per registry: the names a config field may take, as the owning module defines them.


def sampler_names() -> Iterable[str]:
    """Integrators, `samplers.names.SAMPLERS` (the keys of `samplers.SAMPLERS`)."""
    from samplers.names import SAMPLERS
    return SAMPLERS


def interface_names() -> Iterable[str]:
    """Model interfaces, `samplers.names.INTERFACES` (the keys of `samplers.INTERFACES`)."""
    from samplers.names import INTERFACES
    return INTERFACES


def time_dists() -> dict[str, dict[str, float]]:
    """Time grid schedules and their keyword defaults, `samplers.names.DEFAULT_SAMPLING_TIME_KWARGS`."""
    from samplers.names import DEFAULT_SAMPLING_TIME_KWARGS
    return DEFAULT_SAMPLING_TIME_KWARGS


def sampler_dtypes() -> Iterable[str]:
    """Dtypes of the integrator's state, `samplers.names.STATE_DTYPES` (the keys of `samplers.step.DTYPES`)."""
    from samplers.names import STATE_DTYPES
    return STATE_DTYPES


def formats() -> Iterable[str]:
    """Shard file formats, `pipeline.output.codecs.CODECS`."""
    from ..output.codecs import FORMATS
    return FORMATS


def stored_dtypes() -> Iterable[str]:
    """Dtypes of stored samples, `pipeline.output.dtypes.SAMPLE_DTYPES`."""
    from ..output.dtypes import SAMPLE_DTYPES
    return SAMPLE_DTYPES


def noise_schemes() -> Iterable[str]:
    """`auto` (the output's own scheme on resume, else the default) and `samplers.names.NOISE_SCHEME_NAMES`."""
    from samplers.names import NOISE_SCHEME_NAMES
    return ("auto", *NOISE_SCHEME_NAMES)


def network_dtypes() -> Iterable[str]:
    """Dtypes a network runs in, `samplers.names.NET_DTYPES` (the keys of `pipeline.network.NET_DTYPES`)."""
    from samplers.names import NET_DTYPES
    return NET_DTYPES


def autocast_dtypes() -> Iterable[str]:
    """Mixed-precision dtypes of the network call, `pipeline.autocast.AUTOCAST_DTYPES`."""
    from ..autocast import AUTOCAST_DTYPES
    return AUTOCAST_DTYPES


def extractor_names() -> Iterable[str]:
    """FID feature extractors, `pipeline.fid.extractors.EXTRACTORS`."""
    from ..fid.extractors import EXTRACTORS
    return EXTRACTORS


def _choice(registry: Callable[[], Iterable[str]]) -> Any:
    """A string field whose value must be one of `registry()`'s names (looked up when checked)."""

    def check(value: Any) -> str:
        names = tuple(registry())
        if not (isinstance(value, str) and value in names):
            raise ValueError(f"unknown {fmt_value(value)}; allowed: {', '.join(names)}")
        return value

    check.registry = registry  # type: ignore[attr-defined]  # `seedshard config` lists the names (config/describe.py)
    return typing.Annotated[str, PlainValidator(check, json_schema_input_type=str)]


SamplerName = _choice(sampler_names)
Interface = _choice(interface_names)
TimeDist = _choice(time_dists)
SamplerDtype = _choice(sampler_dtypes)
Format = _choice(formats)
StoredDtype = _choice(stored_dtypes)
NetworkDtype = _choice(network_dtypes)
Extractor = _choice(extractor_names)
AutocastDtype = _choice(autocast_dtypes)
NoiseScheme = _choice(noise_schemes)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # numbers are finite
