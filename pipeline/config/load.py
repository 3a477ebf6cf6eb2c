"""Loading a job config: a YAML file, then `key.path=value` overrides (values parsed as YAML),
then validation against the schema. Duplicate keys are an error, not "the last one wins"."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

import yaml

from .errors import ConfigError, fmt_value, unwrap_model
from .schema import JobConfig, validate_config

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
                f"override {override!r}: {where} is {fmt_value(child)} in the file, not a mapping"
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
        model = unwrap_model(cls)
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
