"""The job config schema: pydantic v2 models for the sections `run`, `model`, `sampler`, `cluster`,
`metrics` and `conditioning`, and `validate_config`.

Every model is strict (no string-to-number coercion; ints are accepted where floats are expected)
and forbids unknown keys. The limits, name registries and field types are in `fields`; the `model`
and `conditioning` sections in `model`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, fmt_value, format_validation_error
from .fields import (
    MAX_SAMPLE_ELEMENTS, MAX_SHARDS, MAX_STEPS, Extractor, Format, NoiseScheme, SamplerDtype, SamplerName, StoredDtype, TimeDist,
    _Strict, time_dists,
)
from .model import ConditioningConfig, ModelConfig
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
    store_latents: bool = False  # with model.decoder: also store the pre-decode latents (column/tensor `latent`)
    labels: Literal["none", "fixed", "uniform", "balanced"] = "none"
    label: int | None = None
    overwrite: bool = False
    resume: bool = True
    storage_options: dict[str, Any] = {}
    progress: Literal["auto", "bar", "log", "none"] = "auto"
    on_nonfinite: Literal["fail", "skip"] = "fail"
    grid: int = Field(default=0, ge=0)  # > 0: also write grid.png of the first `grid` samples (image shapes)
    take_over_lease: bool = False  # take the output from a live lease (another driver); expired ones are taken anyway
    # how noise is made (samplers/noise): auto = the output's own scheme when it resumes one, else the newest
    noise_scheme: NoiseScheme = "auto"

    @field_validator("output")
    @classmethod
    def _output_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError(f"must be a non-empty URL or path (got {v!r})")
        return v


class SamplerConfig(_Strict):
    """The integrator, its time grid and guidance."""

    name: SamplerName
    steps: int = Field(gt=0, le=MAX_STEPS)
    time_dist: TimeDist = "uniform"
    # numbers; `explicit`: {t: [times]}; `diffusers`: {scheduler_config: a scheduler_config.json path or its dict}
    time_kwargs: dict[str, float | list[float] | dict[str, Any] | str] = {}
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
        problem = time_kwargs_problem(self.time_dist, self.time_kwargs)
        if problem:
            raise ValueError(f"time_kwargs: {problem}")
        return self


def time_kwargs_problem(time_dist: str, time_kwargs: dict[str, Any]) -> str | None:
    """What is wrong with the value types of `time_kwargs` for `time_dist` (None: nothing), without reading files:
    numbers for the numeric schedules, a list for `explicit`, a path or dict for `diffusers` (a missing one is
    reported when the sampler is built)."""
    if time_dist in ("explicit", "diffusers") and not time_kwargs:
        return None
    if time_dist == "explicit":
        from samplers.schedules import explicit_times  # torch: only for explicit grids

        try:
            explicit_times(time_kwargs.get("t"))
        except ValueError as e:
            return str(e)
        return None
    if time_dist == "diffusers":
        value = time_kwargs.get("scheduler_config")
        if not isinstance(value, (str, dict)):
            return f"scheduler_config must be a scheduler_config.json path or its dict (got {fmt_value(value)})"
        return None
    bad = {k: v for k, v in time_kwargs.items() if not isinstance(v, float)}
    return f"must be numbers for time_dist={time_dist!r} (got {bad})" if bad else None


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
    # where each worker samples: auto = cuda when gpus_per_worker > 0, else cpu; cpu on GPU nodes keeps the GPU
    # reservation but samples on the CPU (what the fake GPU nodes of an autoscaling test can run)
    device: Literal["auto", "cpu", "cuda"] = "auto"


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
    conditioning: ConditioningConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _diffusers_folders(cls, data: Any) -> Any:
        """model.diffusers: factory, interface and (time_dist: diffusers) the grid from the folder's scheduler;
        model.guide.diffusers: the guide's factory and interface (`resolve_guide`)."""
        model = data.get("model") if isinstance(data, dict) else None
        guide = model.get("guide") if isinstance(model, dict) else None
        guide_folder = isinstance(guide, dict) and guide.get("diffusers") is not None
        if not (isinstance(model, dict) and (model.get("diffusers") is not None or guide_folder)):
            return data
        from ..models.diffusers_folder import resolve, resolve_guide

        run = data.get("run") if isinstance(data.get("run"), dict) else {}
        options = run.get("storage_options")
        sampler = data.get("sampler")
        wants_grid = (isinstance(sampler, dict) and sampler.get("time_dist") == "diffusers"
                      and "time_kwargs" not in sampler and model.get("diffusers") is not None)
        settings = None
        if model.get("diffusers") is not None:
            model, settings = resolve(model, options, need_settings=wants_grid)
        if guide_folder:
            model = {**model, "guide": resolve_guide(guide, model, options)}
        data = {**data, "model": model}
        if wants_grid and settings is not None:
            data["sampler"] = {**sampler, "time_kwargs": settings.time_kwargs}
            if sampler.get("name") == settings.sampler and "kwargs" not in sampler:  # e.g. DDPM: ddim with eta 1
                data["sampler"]["kwargs"] = settings.sampler_kwargs
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> "JobConfig":
        problems = _cross_field_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def table_negatives(self) -> bool:
        """Whether the conditioning table gives the classifier-free guide its negatives (the network guides itself)."""
        return self.conditioning is not None and self.conditioning.negatives

    @property
    def table_labels(self) -> bool:
        """Whether the conditioning table maps the class labels (they replace run.labels and are stored)."""
        return self.conditioning is not None and "class_labels" in self.conditioning.columns

    def resolved(self) -> dict[str, Any]:
        """The full config with defaults filled in, as plain JSON types (stored in the manifest)."""
        return self.model_dump(mode="json")


def _cross_field_problems(cfg: JobConfig) -> list[str]:
    run, model, sampler = cfg.run, cfg.model, cfg.sampler
    problems = []
    table_labels, negatives = cfg.table_labels, cfg.table_negatives
    if table_labels and run.labels != "none":  # one problem, not also "needs model.num_classes"
        problems.append(f"run.labels: {run.labels!r} would replace the class labels conditioning.columns maps from "
                        f"column {cfg.conditioning.columns['class_labels']!r}; set run.labels: none to use the "
                        "table's, or unmap class_labels")
    elif run.labels != "none" and model.num_classes is None:
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
    if negatives and model.guide is not None:
        problems.append("conditioning.negative_prompt / negative_columns make the network its own classifier-free "
                        "guide; they cannot be combined with model.guide (autoguidance): remove one")
    if negatives and model.num_classes is not None and "class_labels" in cfg.conditioning.negative_columns:
        problems.append(f"conditioning.negative_columns: class_labels -> "
                        f"{cfg.conditioning.negative_columns['class_labels']!r} would never be seen: with "
                        "model.num_classes the classifier-free guide sees the null label (model.null_label) as "
                        "class_labels; remove one")
    if sampler.guidance_scale != 1 and model.guide is None:
        if model.num_classes is None and not negatives:
            problems.append(
                f"sampler.guidance_scale={sampler.guidance_scale} needs a guide: set model.guide "
                "(autoguidance), model.num_classes (classifier-free guidance on class labels) or "
                "conditioning.negative_prompt / negative_columns (on a conditioning table's keywords)"
            )
        elif model.num_classes is not None and run.labels == "none" and not table_labels:
            problems.append(
                f"sampler.guidance_scale={sampler.guidance_scale} uses classifier-free guidance, "
                "which needs class labels: set run.labels (fixed, uniform or balanced) "
                "or model.guide (autoguidance)"
            )
    shards = -(-run.num_samples // run.shard_size)
    if shards > MAX_SHARDS:
        problems.append(
            f"run.shard_size: run.num_samples={run.num_samples} in shards of {run.shard_size} makes {shards} shards, "
            f"more than the limit of {MAX_SHARDS}; set run.shard_size >= {-(-run.num_samples // MAX_SHARDS)}"
        )
    if math.prod(model.shape) > MAX_SAMPLE_ELEMENTS:
        problems.append(f"model.shape: one sample of {math.prod(model.shape)} elements is more than the limit of "
                        f"{MAX_SAMPLE_ELEMENTS} (got {model.shape})")
    if cfg.metrics.fid is not None and run.num_samples < 2:
        problems.append(f"metrics.fid: needs run.num_samples >= 2 for a covariance (got {run.num_samples})")
    if run.grid:
        if not (len(model.shape) == 3 and model.shape[0] in (1, 3)):
            problems.append(f"run.grid: needs image samples, model.shape [C, H, W] with C in (1, 3) (got {model.shape})")
        if run.grid > run.num_samples:
            problems.append(f"run.grid: must be <= run.num_samples={run.num_samples} (got {run.grid})")
    if run.store_latents and model.decoder is None:
        problems.append("run.store_latents: true needs model.decoder (the latents are what it decodes); "
                        "without one the samples are the latents (got model.decoder=None)")
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


