"""The `Sampler` contract: a keyword-only dataclass whose fields are its whole state.

`save()` returns the fields plus `name` and `version` as plain JSON; `from_state(state)` and
`load(**state)` check the state (unknown or missing keys, a newer version) and construct;
the constructor checks the field types (JSON-plain: int, float, str, Literal, optional,
dict[str, X], tuple) in `Sampler.__post_init__` and each subclass its ranges in its own
`__post_init__`. There are no hidden step counters, so `from_state(s.save())` samples exactly
what `s` samples.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import types
import typing
from typing import Any, ClassVar

import torch


class SamplerStateError(ValueError):
    """A sampler state or constructor argument that cannot be accepted."""


@dataclasses.dataclass(kw_only=True)
class Sampler(abc.ABC):
    """Draws N samples; its whole state round-trips through `save()` / `load()`."""

    name: ClassVar[str]
    version: ClassVar[int] = 1

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in _state_fields(type(self)):
            value, hint = getattr(self, f.name), hints[f.name]
            if not _fits(value, hint):
                raise SamplerStateError(f"{self.name}: {f.name} must be {_hint_name(hint)}, "
                                        f"got {value!r} ({type(value).__name__})")
            if value is not None and hint in (float, float | None):
                setattr(self, f.name, float(value))

    @abc.abstractmethod
    def sample(self, N: int, device: torch.device | str, **kwargs: Any) -> torch.Tensor:
        """Return N samples, batch dimension first."""

    def save(self) -> dict[str, Any]:
        """Plain JSON-able state: 'name', 'version' and every field."""
        state: dict[str, Any] = {"name": self.name, "version": self.version}
        for f in _state_fields(type(self)):
            state[f.name] = _jsonable(getattr(self, f.name))
        return state

    def load(self, **state_dict: Any) -> "Sampler":
        """Restore the state written by `save()`; returns self."""
        self.__init__(**check_state(type(self), state_dict))  # type: ignore[misc]
        return self

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Sampler":
        """A new sampler of this class from the state written by `save()`."""
        return cls(**check_state(cls, state))


def check_params(cls: type[Sampler], kwargs: dict[str, Any]) -> None:
    """Reject unknown and missing arguments for `cls`, naming the allowed ones (types: the constructor)."""
    names = [f.name for f in _state_fields(cls)]
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise SamplerStateError(f"{cls.name}: unknown argument(s) {', '.join(unknown)}; allowed: {', '.join(names)}")
    missing = [f.name for f in _state_fields(cls) if _required(f) and f.name not in kwargs]
    if missing:
        raise SamplerStateError(f"{cls.name}: missing required argument(s) {', '.join(missing)}")


def check_state(cls: type[Sampler], state: dict[str, Any]) -> dict[str, Any]:
    """Validate a saved state's name, version and keys for `cls`; return its constructor arguments."""
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


@functools.cache
def _state_fields(cls: type) -> tuple[dataclasses.Field, ...]:
    """The constructor fields of `cls` in saved-state order: the first one (e.g. `steps`), then those of the
    most derived classes first (the key order of version-1 states, written when subclasses listed their own
    arguments before the inherited ones)."""
    fields = [f for f in dataclasses.fields(cls) if f.init]
    depth = {f.name: max(i for i, k in enumerate(reversed(cls.__mro__)) if f.name in vars(k).get("__annotations__", {}))
             for f in fields}
    return tuple(fields[:1] + sorted(fields[1:], key=lambda f: -depth[f.name]))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits an annotation: bool, int, float, str, None, Literal, unions,
    dict[str, X], tuple[X, ...] (a list is accepted for a tuple)."""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and _fits(v, args[1]) for k, v in value.items())
    if origin is tuple:
        return isinstance(value, (tuple, list)) and len(value) == len(args) and all(map(_fits, value, args))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint) and (hint is bool or not isinstance(value, bool))


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
