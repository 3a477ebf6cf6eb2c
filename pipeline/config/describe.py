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

SECTIONS: tuple[str, ...] = tuple(JobConfig.model_fields)  # run, model, sampler, cluster, metrics, conditioning


def _section_model(info: FieldInfo) -> type[BaseModel]:
    return info.annotation if isinstance(info.annotation, type) else typing.get_args(info.annotation)[0]


def _optional_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model of a `Model | None` field (an optional nested section), else None."""
    args = typing.get_args(info.annotation)
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 and type(None) in args else None


def _doc(model: type[BaseModel]) -> str:
    """A model's docstring on one line (it follows `#` in the printed schema)."""
    return " ".join((model.__doc__ or "").split())


def _registry(metadata: Any) -> Any:
    """The name registry of a field checked against one (schema._choice's validator), else None."""
    for meta in metadata:
        registry = getattr(getattr(meta, "func", None), "registry", None)
        if registry is not None:
            return registry
    return None


def _type_text(info: FieldInfo) -> str:
    registry = _registry(info.metadata)
    if registry is not None:  # a name checked against a registry (schema._choice)
        return "one of " + ", ".join(registry())
    for arg in typing.get_args(info.annotation):  # an optional one: `Choice | None`
        registry = _registry(getattr(arg, "__metadata__", ()))
        if registry is not None:
            return "one of " + ", ".join(registry()) + ", or null"
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
        nested = _optional_model(info)
        if nested is not None:
            lines.append(f"{indent}{name}: null  # optional: {_doc(nested)}")
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
        optional = "optional: " if _optional_model(info) is not None else ""
        out.append(f"{section}:  # {optional}{_doc(model)}")
        out += _lines(model, "  ")
    return "\n".join(out)
