"""Building the network a job samples from: factory + checkpoint -> module -> field.

A model is `factory` ('package.module:callable', called with `kwargs`) plus an optional
checkpoint URL read through fsspec: `.safetensors`, or a torch file loaded with
`weights_only=True`, so a checkpoint can never execute code. The driver reads the checkpoint
once and ships the tensors to the actors through Ray's object store.
"""

from __future__ import annotations

import hashlib
import importlib
import io
from typing import Any

import fsspec
import torch

import samplers

NET_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelError(ValueError):
    """A model that cannot be built: bad factory, unreadable or unsafe checkpoint, key mismatch."""


def import_factory(spec: str) -> Any:
    """The callable named by 'package.module:callable'."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelError(f"model.factory {spec!r}: cannot import module {module_name!r} ({e})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(f"model.factory {spec!r}: module {module_name!r} has no callable {attr!r}")
    return factory


def read_checkpoint(url: str, storage_options: dict[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """(state_dict, sha256 of the file's bytes); refuses pickles that are not plain tensors."""
    try:
        with fsspec.open(url, "rb", **(storage_options or {})) as f:
            data = f.read()
    except (OSError, ValueError) as e:
        raise ModelError(f"model.checkpoint {url!r}: cannot read ({type(e).__name__}: {e})") from None
    digest = hashlib.sha256(data).hexdigest()
    if url.endswith(".safetensors"):
        from safetensors.torch import load as load_safetensors

        try:
            return load_safetensors(data), digest
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ModelError(f"model.checkpoint {url!r}: not a valid safetensors file ({e})") from None
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"model.checkpoint {url!r}: refused or unreadable with weights_only=True; only plain tensor "
            f"checkpoints (or .safetensors) are allowed ({first})"
        ) from None
    for key in ("state_dict", "model", "ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"model.checkpoint {url!r}: expected a dict of tensors (a state_dict)")
    return obj, digest


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """A content hash of a state dict (names, dtypes, shapes, bytes), independent of file format."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def build_network(model_cfg: Any, device: torch.device | str, state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """factory(**kwargs), with `state` loaded strictly, in eval mode on `device` in the model dtype."""
    factory = import_factory(model_cfg.factory)
    try:
        net = factory(**model_cfg.kwargs)
    except Exception as e:  # noqa: BLE001 - user code: report it as one line naming the factory
        raise ModelError(f"model.factory {model_cfg.factory!r} failed with model.kwargs={model_cfg.kwargs}: "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(net, torch.nn.Module):
        raise ModelError(f"model.factory {model_cfg.factory!r} returned {type(net).__name__}, not a torch.nn.Module")
    if state is not None:
        result = net.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ModelError(
                f"model.checkpoint does not fit {model_cfg.factory!r}: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
    net = net.to(device=device, dtype=NET_DTYPES[model_cfg.dtype]).eval().requires_grad_(False)
    return torch.compile(net) if model_cfg.compile else net


def build_field(model_cfg: Any, device: torch.device | str, state: dict[str, torch.Tensor] | None = None) -> samplers.Field:
    """The network of `model_cfg` wrapped by its interface."""
    net = build_network(model_cfg, device, state)
    try:
        return samplers.wrap(net, model_cfg.interface, dtype=NET_DTYPES[model_cfg.dtype], **model_cfg.interface_kwargs)
    except TypeError as e:
        raise ModelError(f"model.interface_kwargs {model_cfg.interface_kwargs} do not fit {model_cfg.interface!r}: {e}") from None


def build_fields(
    model_cfg: Any,
    guidance_scale: float,
    device: torch.device | str,
    state: dict[str, torch.Tensor] | None = None,
    guide_state: dict[str, torch.Tensor] | None = None,
) -> tuple[samplers.Field, samplers.Field | None]:
    """(net, g_net): the guide is model.guide (autoguidance), else the null class (classifier-free), else None."""
    field = build_field(model_cfg, device, state)
    if guidance_scale == 1.0:
        return field, None
    if model_cfg.guide is not None:
        return field, build_field(model_cfg.guide, device, guide_state)
    if model_cfg.num_classes is not None:
        null = model_cfg.null_label if model_cfg.null_label is not None else model_cfg.num_classes
        return field, samplers.null_condition(field, null)
    raise ModelError(f"guidance_scale={guidance_scale} needs a guide: set model.guide or model.num_classes")
