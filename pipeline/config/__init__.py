"""Job configuration: a pydantic v2 schema (`schema`, with the `model` section in `model` and its
building blocks in `fields`), a YAML loader with `key.path=value`
overrides (`load`), one-line-per-problem error messages (`errors`), and the resume comparison (`diff`).

User errors raise `ConfigError` whose text has one line per problem:
`<field.path>: <what is wrong> (got <bad value>)`, naming what is allowed where that is a list.
The resolved config (`JobConfig.resolved()`) is stored in the manifest; `config_diff` compares it
on resume, ignoring the fields in `RESUME_IGNORED`.
"""

from .diff import RESUME_IGNORED, config_diff
from .errors import ConfigError, format_validation_error
from .load import load_config
from .model import GuideConfig, ModelConfig
from .schema import ClusterConfig, FIDConfig, JobConfig, MetricsConfig, RunConfig, SamplerConfig, validate_config

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
