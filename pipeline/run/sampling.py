"""Sampling a range of indices: the one code path behind the Ray actor, the in-process handle and
single-process reference runs, so all three produce the same bytes.

A shard's batches are a fixed function of (shard, batch_size) (`plan.shard_batches`); each
batch draws its labels and noise from (seed, index), so a shard's samples do not depend on
which actor runs it, or when.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import samplers
from samplers.base import check_params
from samplers.names import DEFAULT_NOISE_SCHEME

from ..conditioning import ConditioningTable, load_table
from ..config import ConfigError
from ..decoder import LatentDecoder, build_decoder
from .plan import Shard, shard_batches


class NonFiniteSamplesError(RuntimeError):
    """A batch produced NaN/Inf; the shard is not committed."""


@dataclass
class SampleSpec:
    """Everything besides the model that fixes the samples of an index range."""

    seed: int
    shape: tuple[int, ...]
    labels: str = "none"  # none | fixed | uniform | balanced
    label: int | None = None
    num_classes: int | None = None
    guidance_scale: float = 1.0
    conditioning: ConditioningTable | None = None  # network keywords of each index, from conditioning.table
    decoder: LatentDecoder | None = None  # latents -> stored images (model.decoder)
    noise_scheme: str = DEFAULT_NOISE_SCHEME  # how every draw is made (samplers.NOISE_SCHEMES)

    @classmethod
    def from_config(cls, cfg: Any, device: torch.device | str = "cpu",
                    table_identity: dict[str, Any] | None = None) -> "SampleSpec":
        """`table_identity`: the conditioning table the job recorded (a worker's must be it; load_table)."""
        return cls(
            seed=cfg.run.seed, shape=tuple(cfg.model.shape), labels=cfg.run.labels, label=cfg.run.label,
            num_classes=cfg.model.num_classes, guidance_scale=cfg.sampler.guidance_scale,
            conditioning=load_table(cfg, table_identity), decoder=build_decoder(cfg.model, device, cfg.run.seed),
            noise_scheme=noise_scheme(cfg),
        )


def noise_scheme(cfg: Any) -> str:
    """The noise scheme's name: run.noise_scheme, with `auto` as the default (prepare resolves `auto` to an
    output's own scheme before any worker sees the config)."""
    return DEFAULT_NOISE_SCHEME if cfg.run.noise_scheme == "auto" else cfg.run.noise_scheme


def build_sampler(cfg: Any) -> samplers.Sampler:
    """The sampler named by `cfg.sampler` with its method kwargs; ConfigError when they do not fit it."""
    s = cfg.sampler
    cls = samplers.sampler_class(s.name)
    kwargs = {}
    if issubclass(cls, samplers.StepSampler):
        kwargs = dict(steps=s.steps, time_dist=s.time_dist, time_kwargs=s.time_kwargs, dtype=s.dtype,
                      guidance_interval=s.guidance_interval)
    try:
        check_params(cls, {**kwargs, **s.kwargs})  # unknown keys and wrong types, naming the allowed ones
        return cls(**kwargs, **s.kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"sampler: {str(e).strip() or type(e).__name__} (sampler.kwargs={s.kwargs})") from None


def labels_for(spec: SampleSpec, start: int, stop: int, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """Class labels of indices [start, stop): (n,) int64, or None for unconditional jobs."""
    if spec.labels == "none":
        return None
    if spec.labels == "fixed":
        return torch.full((stop - start,), spec.label, dtype=torch.int64, device=device)
    if spec.labels == "balanced":
        return torch.arange(start, stop, dtype=torch.int64, device=device) % spec.num_classes
    return samplers.SampleNoise(spec.seed, start, stop - start, device, spec.noise_scheme).labels(spec.num_classes)


def describe(sampler: samplers.Sampler) -> str:
    """'heun(steps=32, time_dist=uniform)': the settings an error message should name."""
    state = sampler.save()
    keys = [k for k in ("steps", "time_dist", "time_kwargs") if k in state]
    return f"{state['name']}(" + ", ".join(f"{k}={state[k]}" for k in keys) + ")"


@torch.inference_mode()
def sample_batch(
    sampler: samplers.Sampler, net: samplers.Field, g_net: samplers.Field | None, spec: SampleSpec,
    start: int, stop: int, device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(samples (n, *stored shape) float32 on CPU, labels (n,) or None, and with a decoder the latents it decoded
    (n, *shape) float32 on CPU, else None) for indices [start, stop)."""
    labels = labels_for(spec, start, stop, device)
    table = spec.conditioning
    net_kwargs = table.kwargs(start, stop, device) if table is not None else None
    x = sampler.sample(
        stop - start, device, net=net, shape=spec.shape, seed=spec.seed, start_index=start, labels=labels,
        g_net=g_net, guidance_scale=spec.guidance_scale, net_kwargs=net_kwargs,
        guide_kwargs=table.guide_kwargs(start, stop, device) if table is not None and g_net is not None else None,
        noise_scheme=spec.noise_scheme,
    )
    latents = None
    if spec.decoder is not None:
        latents, x = x, spec.decoder(x)
    finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if not bool(finite.all()):
        bad = (start + torch.nonzero(~finite).flatten().cpu()).tolist()
        raise _nonfinite(bad, stop - start, sampler, spec, "try more steps or another time_dist")
    if labels is None and net_kwargs is not None:  # a table's class labels are the samples' labels (stored)
        labels = net_kwargs.get("class_labels")
    return (x.float().cpu(), (labels.cpu() if labels is not None else None),
            (latents.float().cpu() if latents is not None else None))


def check_stored(stored: np.ndarray, start: int, sampler: samplers.Sampler, spec: SampleSpec) -> None:
    """NonFiniteSamplesError when finite samples (n, *shape) of indices start.. became inf in their stored
    dtype (float16 holds |x| <= 65504), so such a shard is never committed."""
    if not np.issubdtype(stored.dtype, np.floating):
        return
    finite = np.isfinite(stored.reshape(len(stored), -1)).all(axis=1)
    if not finite.all():
        bad = (start + np.flatnonzero(~finite)).tolist()
        raise _nonfinite(bad, len(stored), sampler, spec, f"they overflow the stored dtype {stored.dtype}; store float32")


def _nonfinite(bad: list[int], n: int, sampler: samplers.Sampler, spec: SampleSpec, hint: str) -> NonFiniteSamplesError:
    return NonFiniteSamplesError(
        f"non-finite samples at indices {bad[:10]}{' ...' if len(bad) > 10 else ''} ({len(bad)} of {n}) "
        f"with sampler {describe(sampler)}, guidance_scale={spec.guidance_scale}; {hint}"
    )


def sample_shard(
    sampler: samplers.Sampler, net: samplers.Field, g_net: samplers.Field | None, spec: SampleSpec,
    shard: Shard, batch_size: int, device: torch.device | str,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Samples of the shard in its fixed batches: (float32 (n, *stored shape), int64 labels (n,) or None, and the
    float32 latents (n, *model shape) the decoder decoded, None without a decoder)."""
    xs, ys, zs = [], [], []
    for b_start, b_stop in shard_batches(shard, batch_size):
        x, y, z = sample_batch(sampler, net, g_net, spec, b_start, b_stop, device)
        xs.append(x.numpy())
        ys.append(y.numpy() if y is not None else None)
        zs.append(z.numpy() if z is not None else None)
    labels = None if ys[0] is None else np.concatenate(ys)
    return np.concatenate(xs), labels, (None if zs[0] is None else np.concatenate(zs))

