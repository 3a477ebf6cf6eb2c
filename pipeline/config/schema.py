"""The job config schema: pydantic v2 models for the five sections `run`, `model`, `sampler`,
`cluster`, `metrics`, and `validate_config`.

Every model is strict (no string-to-number coercion; ints are accepted where floats are expected)
and forbids unknown keys. A name chosen from a list (sampler, interface, time_dist, format, stored
dtype, network dtypes, FID extractor) is checked against the registry of the module that uses it,
so the lists are never copied here; the registries are imported only when a name is checked.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel, ConfigDict, Field, PlainValidator, ValidationError, field_validator, model_validator,
)

from .errors import ConfigError, fmt_value, format_validation_error

_FACTORY_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")


# --------------------------------------------------------------------------- registries
# One function per registry: the names a config field may take, as the owning module defines them.


def sampler_names() -> Iterable[str]:
    """Integrators, `samplers.SAMPLERS`."""
    from samplers import SAMPLERS
    return SAMPLERS


def interface_names() -> Iterable[str]:
    """Model interfaces, `samplers.INTERFACES`."""
    from samplers import INTERFACES
    return INTERFACES


def time_dists() -> dict[str, dict[str, float]]:
    """Time grid schedules and their keyword defaults, `samplers.schedules.DEFAULT_SAMPLING_TIME_KWARGS`."""
    from samplers.schedules import DEFAULT_SAMPLING_TIME_KWARGS
    return DEFAULT_SAMPLING_TIME_KWARGS


def sampler_dtypes() -> Iterable[str]:
    """Dtypes of the integrator's state, `samplers.step.DTYPES`."""
    from samplers.step import DTYPES
    return DTYPES


def formats() -> Iterable[str]:
    """Shard file formats, `pipeline.output.codecs.CODECS`."""
    from ..output.codecs import FORMATS
    return FORMATS


def stored_dtypes() -> Iterable[str]:
    """Dtypes of stored samples, `pipeline.output.dtypes.SAMPLE_DTYPES`."""
    from ..output.dtypes import SAMPLE_DTYPES
    return SAMPLE_DTYPES


def network_dtypes() -> Iterable[str]:
    """Dtypes a network runs in, `pipeline.network.NET_DTYPES`."""
    from ..network import NET_DTYPES
    return NET_DTYPES


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

    return typing.Annotated[str, PlainValidator(check, json_schema_input_type=str)]


SamplerName = _choice(sampler_names)
Interface = _choice(interface_names)
TimeDist = _choice(time_dists)
SamplerDtype = _choice(sampler_dtypes)
Format = _choice(formats)
StoredDtype = _choice(stored_dtypes)
NetworkDtype = _choice(network_dtypes)
Extractor = _choice(extractor_names)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --------------------------------------------------------------------------- sections


class RunConfig(_Strict):
    """What to generate and where to write it."""

    num_samples: int = Field(gt=0)
    seed: int = Field(ge=0, lt=2**64)
    shard_size: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    output: str = Field(min_length=1)
    format: Format = "parquet"
    dtype: StoredDtype = "float32"
    labels: Literal["none", "fixed", "uniform", "balanced"] = "none"
    label: int | None = None
    overwrite: bool = False
    resume: bool = True
    storage_options: dict[str, Any] = {}
    progress: Literal["auto", "bar", "log", "none"] = "auto"
    on_nonfinite: Literal["fail", "skip"] = "fail"
    grid: int = Field(default=0, ge=0)  # > 0: also write grid.png of the first `grid` samples (image shapes)
    take_over_lease: bool = False  # take the output from a live lease (another driver); expired ones are taken anyway

    @field_validator("output")
    @classmethod
    def _output_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError(f"must be a non-empty URL or path (got {v!r})")
        return v


class _NetworkConfig(_Strict):
    """A network: how to build it, load its weights, and read its output."""

    factory: str
    kwargs: dict[str, Any] = {}
    checkpoint: str | None = None
    interface: Interface
    interface_kwargs: dict[str, Any] = {}
    shape: list[typing.Annotated[int, Field(gt=0)]] = Field(min_length=1)
    num_classes: int | None = Field(default=None, gt=0)
    null_label: int | None = Field(default=None, ge=0)
    dtype: NetworkDtype = "float32"
    compile: bool = False

    @field_validator("factory")
    @classmethod
    def _factory_format(cls, v: str) -> str:
        if not _FACTORY_RE.match(v):
            raise ValueError(f"must be 'package.module:callable' (got {v!r})")
        return v

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint_suffix(cls, v: str | None) -> str | None:
        if v is not None and not urlsplit(v).path.lower().endswith(_CHECKPOINT_SUFFIXES):
            allowed = ", ".join(_CHECKPOINT_SUFFIXES)
            raise ValueError(f"must be a {allowed} file (got {v!r})")
        return v

    @model_validator(mode="after")
    def _default_null_label(self) -> "_NetworkConfig":
        if self.num_classes is None and self.null_label is not None:
            raise ValueError(f"null_label: needs num_classes (got {self.null_label})")
        if self.num_classes is not None and self.null_label is None:
            self.null_label = self.num_classes
        return self


class GuideConfig(_NetworkConfig):
    """A weaker network that guides the main one (autoguidance, Karras et al. 2024)."""


class ModelConfig(_NetworkConfig):
    """The network to sample from, and optionally a guide network."""

    guide: GuideConfig | None = None


class SamplerConfig(_Strict):
    """The integrator, its time grid and guidance."""

    name: SamplerName
    steps: int = Field(gt=0)
    time_dist: TimeDist = "uniform"
    time_kwargs: dict[str, float] = {}
    guidance_scale: float = Field(default=1.0, ge=0)
    guidance_interval: list[float] | None = None
    kwargs: dict[str, Any] = {}
    dtype: SamplerDtype = "float32"

    @field_validator("guidance_interval")
    @classmethod
    def _interval_ordered(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not (len(v) == 2 and v[0] < v[1]):
            raise ValueError(f"must be [lo, hi] with lo < hi (got {v})")
        return v

    @model_validator(mode="after")
    def _known_time_kwargs(self) -> "SamplerConfig":
        known = tuple(time_dists()[self.time_dist])
        unknown = sorted(set(self.time_kwargs) - set(known))
        if unknown:
            raise ValueError(
                f"time_kwargs: unknown {', '.join(map(repr, unknown))} for "
                f"time_dist={self.time_dist!r}; allowed: {', '.join(known) or 'none'}"
            )
        return self


class ClusterConfig(_Strict):
    """Where to run: the Ray address and the resources of each sampling actor."""

    address: str | None = None
    num_workers: int = Field(default=1, ge=1)
    gpus_per_worker: float = Field(default=0.0, ge=0)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    max_restarts: int = Field(default=3, ge=0)
    max_shard_attempts: int = Field(default=3, ge=1)
    max_in_flight: int = Field(default=2, ge=1)
    wait_for_workers_s: float = Field(default=0.0, ge=0)  # 0: fail at once if the cluster lacks the resources
    shard_timeout_s: float | None = Field(default=None, gt=0)  # None: derived from observed shard times (see run/scheduler.py)
    retry_backoff_s: float = Field(default=1.0, ge=0)  # first retry's delay; doubles per attempt, with jitter


class FIDConfig(_Strict):
    """FID of the generated samples against a reference `.npz` (mu, sigma)."""

    extractor: Extractor = "digits"
    extractor_kwargs: dict[str, Any] = {}
    ref: str | None = None
    batch_size: int = Field(default=250, gt=0)
    store_samples: bool = True


class MetricsConfig(_Strict):
    """Metrics computed while sampling."""

    fid: FIDConfig | None = None


class JobConfig(_Strict):
    """A whole sampling job."""

    run: RunConfig
    model: ModelConfig
    sampler: SamplerConfig
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> "JobConfig":
        problems = _cross_field_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def resolved(self) -> dict[str, Any]:
        """The full config with defaults filled in, as plain JSON types (stored in the manifest)."""
        return self.model_dump(mode="json")


def _cross_field_problems(cfg: JobConfig) -> list[str]:
    run, model, sampler = cfg.run, cfg.model, cfg.sampler
    problems = []
    if run.labels != "none" and model.num_classes is None:
        problems.append(f"run.labels: {run.labels!r} needs model.num_classes (got None)")
    if run.labels == "fixed":
        if run.label is None:
            problems.append("run.label: required with run.labels='fixed' (got None)")
        elif model.num_classes is not None and not 0 <= run.label < model.num_classes:
            problems.append(
                f"run.label: must be in [0, {model.num_classes}) for "
                f"model.num_classes={model.num_classes} (got {run.label})"
            )
    elif run.label is not None:
        problems.append(
            f"run.label: only allowed with run.labels='fixed' (got {run.label} "
            f"with run.labels={run.labels!r})"
        )
    if sampler.guidance_scale != 1 and model.guide is None:
        if model.num_classes is None:
            problems.append(
                f"sampler.guidance_scale={sampler.guidance_scale} needs a guide: set model.guide "
                "(autoguidance) or model.num_classes (classifier-free guidance)"
            )
        elif run.labels == "none":
            problems.append(
                f"sampler.guidance_scale={sampler.guidance_scale} uses classifier-free guidance, "
                "which needs class labels: set run.labels (fixed, uniform or balanced) "
                "or model.guide (autoguidance)"
            )
    if model.guide is not None and model.guide.shape != model.shape:
        problems.append(
            f"model.guide.shape: must equal model.shape={model.shape} (got {model.guide.shape})"
        )
    return problems


def validate_config(data: Any, source: str = "config") -> JobConfig:
    """Validate plain data (e.g. parsed YAML) as a `JobConfig`; problems raise `ConfigError`."""
    if not isinstance(data, dict):
        sections = ", ".join(JobConfig.model_fields)
        raise ConfigError(
            f"{source}: top level must be a mapping with sections {sections} "
            f"(got {type(data).__name__})"
        )
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, JobConfig)) from None


