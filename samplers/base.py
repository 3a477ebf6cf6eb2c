"""The `Sampler` contract, and the state checks every sampler shares.

A sampler's state *is* its configuration: `save()` returns the constructor arguments plus
`name` and `version` as plain JSON; `load(**state)` checks them (unknown keys, wrong types,
a newer version are clear errors) and re-initialises the sampler. There are no hidden step
counters, so `from_state(s.save())` samples exactly what `s` samples.
"""

from __future__ import annotations

import abc
import inspect
import types
import typing
from typing import Any, ClassVar

import torch


class SamplerStateError(ValueError):
    """A sampler state or constructor argument that cannot be accepted."""


class Sampler(abc.ABC):
    """Draws N samples; its whole state round-trips through `save()` / `load()`."""

    name: ClassVar[str]
    version: ClassVar[int] = 1

    def __init__(self, **kwargs: Any) -> None:
        if kwargs:
            raise SamplerStateError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")

    @abc.abstractmethod
    def sample(self, N: int, device: torch.device | str, **kwargs: Any) -> torch.Tensor:
        """Return N samples, batch dimension first."""

    @abc.abstractmethod
    def save(self) -> dict[str, Any]:
        """Plain JSON-able state, including 'name' and 'version'."""

    @abc.abstractmethod
    def load(self, **state_dict: Any) -> "Sampler":
        """Restore the state written by `save()`; returns self."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.save().items() if k not in ("name", "version"))
        return f"{type(self).__name__}({args})"


def constructor_params(cls: type) -> dict[str, inspect.Parameter]:
    """Named keyword parameters of `cls.__init__` and of every base `__init__` it forwards to."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is Sampler or klass is object:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                params.setdefault(p.name, p)
    return params


def _type_hints(cls: type) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is not None and klass is not object:
            hints.update(typing.get_type_hints(init))
    return hints


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a simple annotation (int, float, str, bool, Literal,
    Optional, dict[str, X], tuple/list of X)."""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is dict or hint is dict:
        return isinstance(value, dict) and all(
            isinstance(k, str) and (not args or _matches(v, args[1])) for k, v in value.items()
        )
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
        return all(_matches(v, args[0]) for v in value) if args else True
    return isinstance(value, hint)


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_params(cls: type, kwargs: dict[str, Any]) -> None:
    """Reject unknown keys and wrong types for `cls`'s constructor, naming the allowed ones."""
    params, hints = constructor_params(cls), _type_hints(cls)
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise SamplerStateError(
            f"{cls.name}: unknown argument(s) {', '.join(unknown)}; allowed: {', '.join(params)}"
        )
    for key, value in kwargs.items():
        hint = hints.get(key, Any)
        if not _matches(value, hint):
            raise SamplerStateError(
                f"{cls.name}: {key} must be {_hint_name(hint)}, got {value!r} ({type(value).__name__})"
            )
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise SamplerStateError(f"{cls.name}: missing required argument(s) {', '.join(missing)}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def state_of(sampler: Sampler) -> dict[str, Any]:
    """`save()` for samplers whose constructor arguments are stored as same-named attributes."""
    cls = type(sampler)
    state = {"name": cls.name, "version": cls.version}
    for key in constructor_params(cls):
        state[key] = _jsonable(getattr(sampler, key))
    return state


def checked_params(cls: type, state: dict[str, Any]) -> dict[str, Any]:
    """Validate a saved state for `cls` and return its constructor arguments."""
    state = dict(state)
    name = state.pop("name", cls.name)
    if name != cls.name:
        raise SamplerStateError(f"{cls.name}.load: state is for sampler {name!r}, not {cls.name!r}")
    version = state.pop("version", cls.version)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SamplerStateError(f"{cls.name}.load: version must be a positive int, got {version!r}")
    if version > cls.version:
        raise SamplerStateError(
            f"{cls.name}.load: state version {version} is newer than this seedshard's "
            f"{cls.name} (version {cls.version}); upgrade seedshard to read it"
        )
    check_params(cls, state)
    return state
