"""Job configuration: a pydantic v2 schema, a YAML loader with `key.path=value` overrides,
and one-line-per-problem error messages.

A job file has five sections, `run`, `model`, `sampler`, `cluster`, `metrics`; every model is
strict (no string-to-number coercion; YAML ints are accepted where floats are expected) and
forbids unknown keys. User errors raise `ConfigError` whose text has one line per problem:
`<field.path>: <what is wrong> (got <bad value>)`, naming what is allowed where that is a list.

The resolved config (`JobConfig.resolved()`) is stored in the manifest; `config_diff` compares
it on resume, ignoring the fields in `RESUME_IGNORED` (resources and reporting, never anything
that changes the samples).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "ClusterConfig",
    "ConfigError",
    "FIDConfig",
    "GuideConfig",
    "JobConfig",
    "MetricsConfig",
    "ModelConfig",
    "RESUME_IGNORED",
    "RunConfig",
    "SamplerConfig",
    "config_diff",
    "format_validation_error",
    "load_config",
    "validate_config",
]

# Fields that may change between a run and its resume: resources, reporting, credentials, metrics
# and where the output lives (a copied or moved output resumes). Everything else (seed, sizes,
# model, sampler, dtypes, labels) must match the manifest.
RESUME_IGNORED: tuple[str, ...] = (
    "cluster",
    "run.output",
    "run.progress",
    "run.overwrite",
    "run.resume",
    "run.storage_options",
    "metrics",
)

# Fallbacks used only while `samplers` cannot be imported (it is written alongside this module).
_FALLBACK_SAMPLER_NAMES = (
    "euler", "heun", "euler_maruyama", "euler_jump", "dpmpp_2m",
    "edm_stochastic", "ddim", "langevin", "gaussian_noise",
)
_FALLBACK_TIME_KWARGS = {
    "uniform": ("t_max", "t_min"),
    "exponential": ("sigma_min", "sigma_max"),
    "karras": ("sigma_min", "sigma_max", "rho"),
    "shift": ("shift",),
}

_FACTORY_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")


class ConfigError(ValueError):
    """A user error in a job config; `str(err)` has one line per problem."""

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def _sampler_names() -> tuple[str, ...]:
    try:
        from samplers import SAMPLER_NAMES
    except ImportError:  # TODO: drop once samplers/ lands
        return _FALLBACK_SAMPLER_NAMES
    return tuple(SAMPLER_NAMES)


def _time_kwargs_table() -> dict[str, Iterable[str]]:
    try:
        from samplers import DEFAULT_SAMPLING_TIME_KWARGS
    except ImportError:
        return _FALLBACK_TIME_KWARGS
    return DEFAULT_SAMPLING_TIME_KWARGS


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
    format: Literal["parquet", "safetensors"] = "parquet"
    dtype: Literal["float32", "float16", "uint8"] = "float32"
    labels: Literal["none", "fixed", "uniform", "balanced"] = "none"
    label: int | None = None
    overwrite: bool = False
    resume: bool = True
    storage_options: dict[str, Any] = {}
    progress: Literal["auto", "bar", "log", "none"] = "auto"
    on_nonfinite: Literal["fail", "skip"] = "fail"
    grid: int = Field(default=0, ge=0)  # > 0: also write grid.png of the first `grid` samples (image shapes)

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
    interface: Literal["flow", "edm", "vp_eps", "meanflow"]
    interface_kwargs: dict[str, Any] = {}
    shape: list[typing.Annotated[int, Field(gt=0)]] = Field(min_length=1)
    num_classes: int | None = Field(default=None, gt=0)
    null_label: int | None = Field(default=None, ge=0)
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
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

    name: str
    steps: int = Field(gt=0)
    time_dist: Literal["uniform", "exponential", "karras", "shift"] = "uniform"
    time_kwargs: dict[str, float] = {}
    guidance_scale: float = Field(default=1.0, ge=0)
    guidance_interval: list[float] | None = None
    kwargs: dict[str, Any] = {}
    dtype: Literal["float32", "float64"] = "float32"

    @field_validator("name")
    @classmethod
    def _known_name(cls, v: str) -> str:
        names = _sampler_names()
        if v not in names:
            raise ValueError(f"unknown {v!r}; allowed: {', '.join(names)}")
        return v

    @field_validator("guidance_interval")
    @classmethod
    def _interval_ordered(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not (len(v) == 2 and v[0] < v[1]):
            raise ValueError(f"must be [lo, hi] with lo < hi (got {v})")
        return v

    @model_validator(mode="after")
    def _known_time_kwargs(self) -> "SamplerConfig":
        known = tuple(_time_kwargs_table().get(self.time_dist, ()))
        unknown = sorted(set(self.time_kwargs) - set(known))
        if known and unknown:
            raise ValueError(
                f"time_kwargs: unknown {', '.join(map(repr, unknown))} for "
                f"time_dist={self.time_dist!r}; allowed: {', '.join(known)}"
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


class FIDConfig(_Strict):
    """FID of the generated samples against a reference `.npz` (mu, sigma)."""

    extractor: Literal["digits", "inception"] = "digits"
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


# --------------------------------------------------------------------------- error messages


def _fmt_value(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fmt_loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            out += f".{part}" if out else str(part)
    return out


def _annotation_at(loc: Sequence[Any], root: type[BaseModel]) -> Any:
    """The type annotation of the field at `loc` below `root` (None if `loc` is no field)."""
    cls: Any = root
    ann = None
    for part in loc:
        cls = _unwrap_model(cls)
        if cls is None or not isinstance(part, str) or part not in cls.model_fields:
            return None
        ann = cls.model_fields[part].annotation
        cls = ann
    return ann


def _unwrap_model(ann: Any) -> type[BaseModel] | None:
    """`X`, `X | None` -> X when X is a pydantic model, else None."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _literal_values(ann: Any) -> tuple[Any, ...]:
    if typing.get_origin(ann) is Literal:
        return typing.get_args(ann)
    for arg in typing.get_args(ann):
        if typing.get_origin(arg) is Literal:
            return typing.get_args(arg)
    return ()


_TYPE_NAMES = {
    "int_type": "an integer", "int_from_float": "an integer", "float_type": "a number",
    "string_type": "a string", "bool_type": "true or false", "dict_type": "a mapping",
    "list_type": "a list", "model_type": "a mapping", "model_attributes_type": "a mapping",
}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
           "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}


def _prefix(path: str, message: str, model: type[BaseModel] | None) -> str:
    """`path: message`, or `path.field: ...` when a section's validator names one of its fields."""
    head, sep, _ = message.partition(": ")
    if sep and model is not None and head in model.model_fields:
        return f"{path}.{message}"
    return f"{path}: {message}"


def _error_lines(err: dict[str, Any], root: type[BaseModel]) -> list[str]:
    loc, kind, value, ctx = err["loc"], err["type"], err.get("input"), err.get("ctx") or {}
    path = _fmt_loc(loc)
    got = f"(got {_fmt_value(value)})"
    if kind == "value_error":
        # Our own validators: their messages already quote the bad value. The top-level
        # cross-field validator reports several problems, one per line, each with its path.
        msg = str(ctx.get("error", err["msg"])).removeprefix("Value error, ")
        if not loc:
            return msg.splitlines()
        model = _unwrap_model(_annotation_at(loc, root))
        return [_prefix(path, line, model) for line in msg.splitlines()]
    if kind == "extra_forbidden":
        parent = _unwrap_model(_annotation_at(loc[:-1], root)) if len(loc) > 1 else root
        allowed = f"; allowed: {', '.join(parent.model_fields)}" if parent else ""
        return [f"{path}: unknown field{allowed}"]
    if kind == "missing":
        return [f"{path}: required field missing"]
    if kind == "literal_error":
        values = _literal_values(_annotation_at(loc, root))
        allowed = ", ".join(map(str, values)) if values else ctx.get("expected", "?")
        return [f"{path}: unknown {_fmt_value(value)}; allowed: {allowed}"]
    if kind in _BOUNDS:
        key, op = _BOUNDS[kind]
        return [f"{path}: must be {op} {ctx[key]} {got}"]
    if kind == "string_too_short":
        return [f"{path}: must be non-empty {got}"]
    if kind == "too_short":
        n = ctx["min_length"]
        return [f"{path}: must have at least {n} item{'s' if n != 1 else ''} {got}"]
    if kind in _TYPE_NAMES:
        kind_name = type(value).__name__
        return [f"{path}: must be {_TYPE_NAMES[kind]} (got {_fmt_value(value)} of type {kind_name})"]
    return [f"{path}: {err['msg'][:1].lower()}{err['msg'][1:]} {got}"]


def format_validation_error(
    exc: ValidationError, root: type[BaseModel] = JobConfig
) -> list[str]:
    """One short line per problem in `exc`: `field.path: what is wrong (got value)`."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        lines.extend(_error_lines(err, root))
    return lines


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
        raise ConfigError(format_validation_error(exc)) from None


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None


def _set_override(data: dict[str, Any], override: str) -> None:
    """Apply one `key.path=value` override (value parsed as YAML) to `data` in place."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {override!r}: expected key.path=value")
    if not raw.strip():
        raise ConfigError(f"override {override!r}: empty value (write {key}=null for None)")
    parts = key.split(".")
    if not all(p.isidentifier() for p in parts):
        raise ConfigError(f"override {override!r}: bad key path {key!r}")
    value = _parse_yaml(raw, f"override {key}")

    _check_override_path(parts, override)
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(
                f"override {override!r}: {where} is {_fmt_value(child)} in the file, not a mapping"
            )
        node = child
    node[parts[-1]] = value


def _check_override_path(parts: Sequence[str], override: str) -> None:
    """Check a dotted path against the schema (not the file, so absent sections can be set);
    below a free-form dict field such as `model.kwargs`, any key is allowed."""
    cls: Any = JobConfig
    for i, part in enumerate(parts):
        if typing.get_origin(cls) is dict:
            return
        model = _unwrap_model(cls)
        if model is None:
            raise ConfigError(f"override {override!r}: {'.'.join(parts[:i])} is not a section")
        if part not in model.model_fields:
            where, allowed = ".".join(parts[: i + 1]), ", ".join(model.model_fields)
            raise ConfigError(f"override {override!r}: unknown field {where}; allowed: {allowed}")
        cls = model.model_fields[part].annotation


def load_config(path: str, overrides: Sequence[str] = ()) -> JobConfig:
    """Read a YAML job file, apply `key.path=value` overrides (YAML-typed), and validate."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{path}: cannot read config: {reason}") from None
    data = _parse_yaml(text, path)
    if not isinstance(data, dict):
        return validate_config(data, source=path)  # raises the top-level error
    for override in overrides:
        _set_override(data, override)
    return validate_config(data, source=path)


# --------------------------------------------------------------------------- resume


def config_diff(
    a: dict[str, Any], b: dict[str, Any], ignore: Iterable[str] = RESUME_IGNORED
) -> list[str]:
    """Dotted paths whose values differ between two resolved configs, skipping `ignore`
    (a path is ignored when it equals an entry or lies under it)."""
    ignored = tuple(ignore)
    missing = object()
    diffs: list[str] = []

    def skip(path: str) -> bool:
        return any(path == p or path.startswith(p + ".") for p in ignored)

    def walk(x: Any, y: Any, prefix: str) -> None:
        if skip(prefix):
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                walk(x.get(k, missing), y.get(k, missing), f"{prefix}.{k}" if prefix else str(k))
        elif x is missing or y is missing or x != y or isinstance(x, bool) != isinstance(y, bool):
            diffs.append(prefix)

    walk(a, b, "")
    return diffs
