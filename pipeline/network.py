"""Building the network a job samples from: factory + checkpoint -> module -> field.

A model is `factory` ('package.module:callable', called with `kwargs`) plus an optional
checkpoint URL read through fsspec: `.safetensors`, or a torch file loaded with
`weights_only=True`, so a checkpoint can never execute code. The driver reads the checkpoint
once and ships the tensors to the actors through Ray's object store.
"""

from __future__ import annotations

import hashlib
import importlib
from typing import Any

import torch

import samplers

from .models.checkpoint import CheckpointTooLarge, parse_state_dict, read_bytes
from .redact import redact_url, scrub

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


def read_checkpoint(url: str, storage_options: dict[str, Any] | None = None,
                    max_bytes: int | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """(state_dict, sha256 of the file's bytes); refuses pickles that are not plain tensors, and files
    (or torch zip files unpacked) larger than `max_bytes`."""
    try:
        data = read_bytes(url, storage_options, max_bytes)
    except CheckpointTooLarge as e:
        raise ModelError(f"model.checkpoint {scrub(str(e), storage_options, [url])}") from None
    except (OSError, ValueError) as e:
        reason = scrub(" ".join(f"{type(e).__name__}: {e}".split()), storage_options, [url])
        raise ModelError(f"model.checkpoint {redact_url(url)!r}: cannot read ({reason})") from None
    try:
        return parse_state_dict(data, url, max_bytes), hashlib.sha256(data).hexdigest()
    except ValueError as e:
        raise ModelError(f"model.checkpoint {scrub(str(e), storage_options, [url])}") from None


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
        try:
            result = net.load_state_dict(state, strict=False)
        except RuntimeError as e:  # size mismatch: torch lists every tensor, one per line
            lines = [line.strip() for line in str(e).splitlines()[1:] if line.strip()] or [str(e)]
            raise ModelError(f"model.checkpoint does not fit {model_cfg.factory!r}: {'; '.join(lines[:3])}") from None
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


def check_model(model_cfg: Any, state: dict[str, torch.Tensor] | None = None) -> samplers.Field:
    """Build and wrap the network on the meta device (no memory, no compute) with `state` loaded, so a
    factory, checkpoint or interface_kwargs that do not fit fail on the driver before any worker starts.
    A factory that cannot run on the meta device is checked on the CPU instead. Returns the field built."""
    import warnings

    cfg = model_cfg.model_copy(update={"compile": False})
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")  # "copying into a meta parameter is a no-op"
            return build_field(cfg, "meta", state)
    except Exception:  # noqa: BLE001 - the CPU build below raises the real error, or passes
        return build_field(cfg, "cpu", state)


def model_identity(model_cfg: Any, storage_options: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """({factory, kwargs, checkpoint, sha256}, state dict or None): what the samples are drawn from. The
    sha256 is the checkpoint file's, or without a checkpoint that of the factory's initial state dict."""
    identity = {"factory": model_cfg.factory, "kwargs": model_cfg.kwargs,
                "checkpoint": redact_url(model_cfg.checkpoint) if model_cfg.checkpoint else None}
    if model_cfg.checkpoint is not None:
        state, identity["sha256"] = read_checkpoint(model_cfg.checkpoint, storage_options, model_cfg.max_checkpoint_bytes)
        return identity, state
    identity["sha256"] = state_dict_sha256(build_network(model_cfg, "cpu").state_dict())
    return identity, None
