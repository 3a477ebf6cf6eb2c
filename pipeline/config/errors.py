"""Config errors: `ConfigError`, and pydantic's validation errors rendered as one short line per
problem, `<field.path>: <what is wrong> (got <bad value>)`, naming what is allowed where that is a list."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """A user error in a job config; `str(err)` has one line per problem."""

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def fmt_value(value: Any, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unwrap_model(ann: Any) -> type[BaseModel] | None:
    """`X`, `X | None` -> X when X is a pydantic model, else None."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


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
        cls = unwrap_model(cls)
        if cls is None or not isinstance(part, str) or part not in cls.model_fields:
            return None
        ann = cls.model_fields[part].annotation
        cls = ann
    return ann


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
    "list_type": "a list", "finite_number": "a finite number", "model_type": "a mapping", "model_attributes_type": "a mapping",
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
    got = f"(got {fmt_value(value)})"
    if kind == "value_error":
        # Our own validators: their messages already quote the bad value. The top-level
        # cross-field validator reports several problems, one per line, each with its path.
        msg = str(ctx.get("error", err["msg"])).removeprefix("Value error, ")
        if not loc:
            return msg.splitlines()
        model = unwrap_model(_annotation_at(loc, root))
        return [_prefix(path, line, model) for line in msg.splitlines()]
    if kind == "extra_forbidden":
        parent = unwrap_model(_annotation_at(loc[:-1], root)) if len(loc) > 1 else root
        allowed = f"; allowed: {', '.join(parent.model_fields)}" if parent else ""
        return [f"{path}: unknown field{allowed}"]
    if kind == "missing":
        return [f"{path}: required field missing"]
    if kind == "literal_error":
        values = _literal_values(_annotation_at(loc, root))
        allowed = ", ".join(map(str, values)) if values else ctx.get("expected", "?")
        return [f"{path}: unknown {fmt_value(value)}; allowed: {allowed}"]
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
        return [f"{path}: must be {_TYPE_NAMES[kind]} (got {fmt_value(value)} of type {kind_name})"]
    return [f"{path}: {err['msg'][:1].lower()}{err['msg'][1:]} {got}"]


def format_validation_error(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One short line per problem in `exc` (raised validating `root`): `field.path: what is wrong (got value)`."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        lines.extend(_error_lines(err, root))
    return lines
