"""Loading a job config: a YAML file, then `key.path=value` overrides (values parsed as YAML the same
way, see `yaml12`), then validation against the schema."""

from __future__ import annotations

import os
import typing
from collections.abc import Sequence
from typing import Any

import yaml

from .errors import ConfigError, fmt_value, unwrap_model
from .schema import JobConfig, validate_config
from .yaml12 import MAX_YAML_BYTES, check_size, parse_yaml


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
        raise ConfigError(f"override {override!r}: bad key path {key!r}; a key path is dot-separated field names "
                          f"such as run.num_samples or model.kwargs.width")
    value = parse_yaml(raw, f"override {key}")
    comment = _yaml_comment(raw)
    if comment:
        raise ConfigError(f"override {override!r}: the value holds a YAML comment {comment!r}, which would be dropped; "
                          f"quote the value to keep the '#': {key}=\"...\"")

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


def _yaml_comment(raw: str) -> str:
    """The YAML comment in an override's value ('' when none): the text after the value's last token."""
    # zero-width tokens (stream and block ends) sit after a trailing comment
    end = max((t.end_mark.index for t in yaml.scan(raw) if t.end_mark.index > t.start_mark.index), default=0)
    return raw[end:].strip()


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
        with open(path, "rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)  # never more than the limit allows, whatever the file is
            check_size(max(len(raw), os.fstat(f.fileno()).st_size), path)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{path}: cannot read config: {reason}") from None
    data = parse_yaml(text, path)
    if not isinstance(data, dict):
        return validate_config(data, source=path)  # raises the top-level error
    for override in overrides:
        _set_override(data, override)
    return validate_config(data, source=path)
