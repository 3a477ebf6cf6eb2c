"""The job fingerprint: a sha256 over everything that determines a job's stored bytes.

`fingerprint_fields` lists those things by name (dotted like config paths, so a resume that
differs can name each field with its old and new value): the resolved sampler state, seed,
labels, guidance, the model's and guide's identity (sha256 of the weights the workers run,
factory, kwargs, interface, shape, classes, network dtype, autocast, compile, and the configs of diffusers
models: network.config_sha256), the decoder's (and its factory's name and kwargs, or its config) and the
conditioning table's sha256 (its text encoder's, its negatives for classifier-free guidance), stored dtype and
format, run.store_latents (when true), shard and batch size, torch intra-op threads, device type, torch version,
for CPU jobs the CPU kernels (architecture and vector instructions: float32 bits differ across them), noise
scheme and the format version. `run.num_samples` is not among them: a job grows without changing its shards.
Fields added later are absent from older outputs' fingerprints, which keep resuming (resume.as_recorded).
The fingerprint is the sha256 of their canonical JSON (sorted keys, no spaces); it is stored in
the manifest (`fingerprint`), in every shard's key/value metadata (`seedshard.fingerprint`) and
in its sidecar.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..output.layout import FORMAT_VERSION

__all__ = ["fingerprint_diff", "fingerprint_fields", "job_fingerprint", "job_runtime", "torch_threads"]


def torch_threads(cfg: Any) -> int:
    """Torch intra-op threads of every worker: cluster.cpus_per_worker rounded down, at least 1."""
    return max(1, int(cfg.cluster.cpus_per_worker))


def job_runtime(cfg: Any) -> dict[str, str]:
    """What the workers run on besides the config: {torch version, device type} and, for the CPU, the kernels."""
    import torch

    device = worker_device(cfg)
    return {"torch": torch.__version__, "device": device, **({"cpu": cpu_kernels()} if device == "cpu" else {})}


def cpu_kernels() -> str:
    """'x86_64 AVX512': the architecture and the vector instructions torch's CPU kernels use here (float32 results
    differ across them), as ATEN_CPU_CAPABILITY may lower it."""
    import platform

    import torch

    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}"


def worker_device(cfg: Any) -> str:
    """The device type every worker samples on: cluster.device, where `auto` is cuda with GPUs, else cpu."""
    if cfg.cluster.device != "auto":
        return cfg.cluster.device
    return "cuda" if cfg.cluster.gpus_per_worker > 0 else "cpu"


def _network(net_cfg: Any, identity: dict[str, Any]) -> dict[str, Any]:
    return {"sha256": identity.get("sha256"), "factory": net_cfg.factory, "kwargs": net_cfg.kwargs,
            "interface": net_cfg.interface, "interface_kwargs": net_cfg.interface_kwargs, "shape": list(net_cfg.shape),
            "num_classes": net_cfg.num_classes, "null_label": net_cfg.null_label, "dtype": net_cfg.dtype,
            "compile": net_cfg.compile, **({"autocast": net_cfg.autocast} if getattr(net_cfg, "autocast", None) else {}),
            **({"config_sha256": identity["config_sha256"]} if identity.get("config_sha256") else {})}


def _extras(cfg: Any, model: dict[str, Any]) -> dict[str, Any]:
    """The decoder (weights, latent scaling, and a factory's name and kwargs) and the conditioning table (content
    and columns), when the job has them: not their URLs or folders, which may move without changing a byte."""
    extras = {}
    if (decoder := cfg.model.decoder) is not None:
        identity = model.get("decoder", {})  # decoder.decoder_identity; factory, kwargs, config_sha256: newer
        extras["model.decoder"] = {"sha256": identity.get("sha256"), "shape": list(decoder.shape),
                                   "scaling_factor": decoder.scaling_factor, "shift_factor": decoder.shift_factor,
                                   **{k: identity[k] for k in ("factory", "kwargs", "config_sha256") if k in identity}}
    if (cond := getattr(cfg, "conditioning", None)) is not None:
        table = model.get("conditioning") or {}
        guided = cfg.sampler.guidance_scale != 1  # negatives change nothing unguided
        extras["conditioning"] = {"sha256": table.get("sha256"), "columns": cond.columns,
                                  **({"text_encoder": table["text_encoder"]["sha256"]} if "text_encoder" in table else {}),
                                  **({"negative_prompt": cond.negative_prompt}
                                     if guided and cond.negative_prompt is not None else {}),
                                  **({"negative_columns": cond.negative_columns} if guided and cond.negative_columns else {})}
    return extras


def fingerprint_fields(cfg: Any, model: dict[str, Any], sampler_state: dict[str, Any], noise_scheme: str,
                       runtime: dict[str, Any], format_version: int = FORMAT_VERSION) -> dict[str, Any]:
    """{name: value} of everything that determines the bytes of job `cfg` (a JobConfig) with model identity
    `model` (network.model_identity, with `guide`, `decoder`, `conditioning`), `sampler_state`, `noise_scheme`,
    `runtime` (job_runtime) and the output's `format_version` (pipeline.output.layout)."""
    run, m = cfg.run, cfg.model
    fields = {
        "format_version": format_version, "noise_scheme": noise_scheme, "sampler": dict(sampler_state),
        "sampler.guidance_scale": cfg.sampler.guidance_scale,
        "run.seed": run.seed, "run.labels": run.labels, "run.label": run.label, "run.dtype": run.dtype,
        "run.format": run.format, "run.shard_size": run.shard_size, "run.batch_size": run.batch_size,
        "model": _network(m, model),
        "model.guide": _network(m.guide, model.get("guide", {})) if m.guide is not None else None,
        "torch.threads": torch_threads(cfg), "torch.version": runtime.get("torch"), "device": runtime.get("device"),
        **({"cpu.kernels": runtime["cpu"]} if "cpu" in runtime else {}),  # absent: older fingerprints, cuda
        **({"run.store_latents": True} if run.store_latents else {}),  # an extra column; absent: older fingerprints
        **_extras(cfg, model),
    }
    return fields


def job_fingerprint(fields: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of `fingerprint_fields(...)`."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))  # -Infinity: a diffusers scheduler_config (lambda_min_clipped)
    return hashlib.sha256(text.encode()).hexdigest()


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    """Leaves of `value` by dotted name; an empty dict has none (kwargs {} -> {"a": 1} shows as "kwargs.a")."""
    if isinstance(value, dict):
        for k in sorted(value, key=str):
            _flatten(value[k], f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value
    return out


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'run.seed: 0 -> 1' for each leaf field that differs between two `fingerprint_fields` results."""
    a, b = _flatten(old, "", {}), _flatten(new, "", {})
    missing = object()

    def show(value: Any) -> str:
        return "(none)" if value is missing else json.dumps(value)

    return [f"{k}: {show(a.get(k, missing))} -> {show(b.get(k, missing))}"
            for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)
            or isinstance(a.get(k), bool) != isinstance(b.get(k), bool)]
