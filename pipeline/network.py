"""Building the network a job samples from: factory + checkpoint -> module -> field.

A model is `factory` ('package.module:callable', called with `kwargs`) plus an optional
checkpoint URL read through fsspec: `.safetensors`, or a torch file loaded with
`weights_only=True`, so a checkpoint can never execute code. The driver builds the network once
(`model_identity`: the factory under torch's RNG seeded with the job's seed, then the checkpoint)
and ships its full state (parameters and buffers) to the actors through Ray's object store; each
actor builds the skeleton under the same seed, loads that state strictly and checks the sha256 of
what it runs (`module_sha256`), so every shard of a job comes from one network.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
from collections.abc import Iterator
from typing import Any

import torch

import samplers
import samplers.names

from .autocast import AutocastNet
from .models.checkpoint import CheckpointTooLarge, parse_state_dict, read_bytes
from .redact import redact_url, scrub

NET_DTYPES = {name: getattr(torch, name) for name in samplers.names.NET_DTYPES}


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
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()


def module_sha256(net: torch.nn.Module) -> str:
    """sha256 of what a module computes with: every parameter and every buffer (non-persistent ones too)."""
    return state_dict_sha256({**dict(net.named_parameters()), **dict(net.named_buffers())})


def config_sha256(net: torch.nn.Module) -> str | None:
    """sha256 of the configs of the diffusers models in `net` (settings no weight shows: act_fn, norm_eps, ...),
    without their `_`-keys (the folder's path, the diffusers version) but for `_class_name`; None without any."""
    configs = [{k: v for k, v in m.config.items() if not k.startswith("_") or k == "_class_name"}
               for m in net.modules() if isinstance(getattr(m, "config", None), dict)]
    if not configs:
        return None
    return hashlib.sha256(json.dumps(configs, sort_keys=True, default=str).encode()).hexdigest()


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Torch's CPU RNG seeded with `seed` inside, restored after (nothing done for None): a factory that
    initialises randomly builds the same network in every process."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def load_network(model_cfg: Any, state: dict[str, torch.Tensor] | None = None, seed: int | None = None) -> torch.nn.Module:
    """factory(**kwargs) under torch's RNG seeded with `seed`, with `state` loaded strictly (not moved or cast)."""
    factory = import_factory(model_cfg.factory)
    try:
        with seeded(seed):
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
    return net


def build_network(model_cfg: Any, device: torch.device | str, state: dict[str, torch.Tensor] | None = None, *,
                  seed: int | None = None, sha256: str | None = None, net: torch.nn.Module | None = None) -> torch.nn.Module:
    """`load_network` (or `net`, one it already built), in eval mode on `device` in the model dtype; ModelError when
    `sha256` is given and the loaded module's (module_sha256, before the cast) differs."""
    net = load_network(model_cfg, state, seed) if net is None else net
    if sha256 is not None and module_sha256(net) != sha256:
        raise ModelError(f"model.factory {model_cfg.factory!r} built a network whose weights (sha256 {module_sha256(net)[:12]}) "
                         f"differ from the driver's ({sha256[:12]}) after loading its state: the factory sets "
                         "something the state does not hold (a non-persistent buffer read from a changing file?)")
    net = net.to(device=device, dtype=NET_DTYPES[model_cfg.dtype]).eval().requires_grad_(False)
    return torch.compile(net) if model_cfg.compile else net


def build_field(model_cfg: Any, device: torch.device | str, state: dict[str, torch.Tensor] | None = None,
                **build: Any) -> samplers.Field:
    """The network of `model_cfg` wrapped by its interface; `build`: build_network's seed, sha256 and net."""
    net = build_network(model_cfg, device, state, **build)
    if getattr(model_cfg, "autocast", None):
        net = AutocastNet(net, model_cfg.autocast)
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
    *,
    seed: int | None = None,
    sha256: tuple[str | None, str | None] = (None, None),
    nets: tuple[torch.nn.Module | None, torch.nn.Module | None] = (None, None),
    negatives: bool = False,
) -> tuple[samplers.Field, samplers.Field | None]:
    """(net, g_net): the guide is model.guide (autoguidance), else the null class (classifier-free), else, with
    `negatives` (a conditioning table's, fed to the guide as guide_kwargs), the network itself, else None.
    Networks are built under torch's RNG seeded with `seed` and checked against `sha256` (model, guide), unless
    `nets` (model, guide) holds them already built (`identify_network`)."""
    field = build_field(model_cfg, device, state, seed=seed, sha256=sha256[0], net=nets[0])
    if guidance_scale == 1.0:
        return field, None
    if model_cfg.guide is not None:
        return field, build_field(model_cfg.guide, device, guide_state, seed=seed, sha256=sha256[1], net=nets[1])
    if model_cfg.num_classes is not None:
        null = model_cfg.null_label if model_cfg.null_label is not None else model_cfg.num_classes
        return field, samplers.null_condition(field, null)
    if negatives:
        return field, field
    raise ModelError(f"guidance_scale={guidance_scale} needs a guide: set model.guide, model.num_classes or a "
                     "conditioning table's negatives")


def cpu_config(model_cfg: Any) -> Any:
    """`model_cfg` as the driver's CPU runs it: not compiled, float16 as float32 (CPU kernels for it are spotty)."""
    update = {"compile": False} | ({"dtype": "float32"} if model_cfg.dtype == "float16" else {})
    if getattr(model_cfg, "guide", None) is not None:
        update["guide"] = cpu_config(model_cfg.guide)
    return model_cfg.model_copy(update=update)


def check_model(model_cfg: Any, state: dict[str, torch.Tensor] | None = None,
                net: torch.nn.Module | None = None) -> samplers.Field:
    """Build and wrap the network on the meta device (no memory, no compute) with `state` loaded, so a
    factory, checkpoint or interface_kwargs that do not fit fail on the driver before any worker starts.
    A factory that cannot run on the meta device is checked on the CPU instead; `net`, a network already built
    with its state (`identify_network`), is wrapped as the driver's CPU runs it (`cpu_config`), not built again.
    Returns the field."""
    import warnings

    if net is not None:
        return build_field(cpu_config(model_cfg), "cpu", net=net)
    cfg = model_cfg.model_copy(update={"compile": False})
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")  # "copying into a meta parameter is a no-op"
            return build_field(cfg, "meta", state)
    except Exception:  # noqa: BLE001 - the CPU build below raises the real error, or passes
        return build_field(cfg, "cpu", state)


def model_identity(model_cfg: Any, storage_options: dict[str, Any], seed: int | None = None) -> tuple[dict[str, Any], Any]:
    """({factory, kwargs, checkpoint, checkpoint_sha256, sha256[, config_sha256]}, state dict): what the samples are
    drawn from. The network is built once here: the factory under torch's RNG seeded with `seed`, then the checkpoint;
    its full state (parameters and buffers) is what every worker loads, and `sha256` its module_sha256;
    `config_sha256` (config_sha256) when it holds diffusers models."""
    return identify_network(model_cfg, storage_options, seed)[:2]


def identify_network(model_cfg: Any, storage_options: dict[str, Any],
                     seed: int | None = None) -> tuple[dict[str, Any], Any, torch.nn.Module]:
    """`model_identity` and the network it built (on the CPU, state loaded, sharing its tensors with the state
    dict), so the driver's checks use it instead of building it again."""
    identity = {"factory": model_cfg.factory, "kwargs": model_cfg.kwargs,
                "checkpoint": redact_url(model_cfg.checkpoint) if model_cfg.checkpoint else None, "checkpoint_sha256": None}
    checkpoint = None
    if model_cfg.checkpoint is not None:
        checkpoint, identity["checkpoint_sha256"] = read_checkpoint(model_cfg.checkpoint, storage_options,
                                                                    model_cfg.max_checkpoint_bytes)
    net = load_network(model_cfg, checkpoint, seed)
    identity["sha256"] = module_sha256(net)
    if (config := config_sha256(net)) is not None:
        identity["config_sha256"] = config
    return identity, {k: v.detach() for k, v in net.state_dict().items()}, net


def coverage_warning(model_cfg: Any, sampler: samplers.Sampler) -> str | None:
    """One line when the sampler's grid covers only part of the model's trained range (a vp_* grid starting at
    sigma = 1 of a 0.01..157 range; a grid below its lowest trained sigma), via `samplers.grid_coverage_warning`.
    Quiet for `time_dist: diffusers`, which reproduces a scheduler's own grid, and for samplers without a grid.
    Reads only the interface's schedule: no network is built."""
    if not isinstance(sampler, samplers.StepSampler) or sampler.time_dist == "diffusers":
        return None
    field = samplers.wrap(torch.nn.Identity(), model_cfg.interface, **model_cfg.interface_kwargs)
    return samplers.grid_coverage_warning(field, sampler.sample_t())
