"""The job config schema as text for users (`seedshard config`): every section and field with its type,
default and allowed values, read from the pydantic models so it never drifts from what is validated."""

from __future__ import annotations

import json
import re
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .schema import JobConfig

SECTIONS: tuple[str, ...] = tuple(JobConfig.model_fields)  # run, model, sampler, cluster, metrics


def _section_model(info: FieldInfo) -> type[BaseModel]:
    return info.annotation if isinstance(info.annotation, type) else typing.get_args(info.annotation)[0]


def _type_text(info: FieldInfo) -> str:
    for meta in info.metadata:
        registry = getattr(getattr(meta, "func", None), "registry", None)
        if registry is not None:  # a name checked against a registry (schema._choice)
            return "one of " + ", ".join(registry())
    text = re.sub(r"Annotated\[(\w+), FieldInfo\(.*?metadata=\[(.*?)\]\)\]", r"\1 \2", repr(info.annotation))
    text = _constraints(text.replace("typing.", ""))
    text = re.sub(r"^Literal\[(.*)\]$", lambda m: "one of " + m.group(1).replace("'", ""), text)
    return text[len("<class '"):-2] if text.startswith("<class '") else text


def _constraints(text: str) -> str:
    """`Gt(gt=0)` -> `> 0` and the like."""
    for name, op in (("Gt", ">"), ("Ge", ">="), ("Lt", "<"), ("Le", "<="), ("MinLen", "length >=")):
        text = re.sub(rf"{name}\(\w+=([^)]*)\)", rf"{op} \1", text)
    return text


def _default_text(info: FieldInfo) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "(required)"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value)


def _lines(model: type[BaseModel], indent: str) -> list[str]:
    lines = []
    for name, info in model.model_fields.items():
        nested = _section_model(info) if name == "guide" or name == "fid" else None
        if nested is not None and issubclass(nested, BaseModel):
            lines.append(f"{indent}{name}: null  # optional: {(nested.__doc__ or '').strip()}")
            lines += _lines(nested, indent + "  ")
            continue
        checks = [_constraints(str(m)) for m in info.metadata if not hasattr(m, "func")]
        lines.append(f"{indent}{name}: {_default_text(info)}  # {_type_text(info)}"
                     + (f" ({', '.join(checks)})" if checks else ""))
    return lines


def describe_schema() -> str:
    """Every section of a job config, one field a line: `name: default  # type (constraints)`."""
    out: list[str] = []
    for section, info in JobConfig.model_fields.items():
        model = _section_model(info)
        out.append(f"{section}:  # {(model.__doc__ or '').strip()}")
        out += _lines(model, "  ")
    return "\n".join(out)
