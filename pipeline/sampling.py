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

    @classmethod
    def from_config(cls, cfg: Any) -> "SampleSpec":
        return cls(
            seed=cfg.run.seed, shape=tuple(cfg.model.shape), labels=cfg.run.labels, label=cfg.run.label,
            num_classes=cfg.model.num_classes, guidance_scale=cfg.sampler.guidance_scale,
        )


def labels_for(spec: SampleSpec, start: int, stop: int, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """Class labels of indices [start, stop): (n,) int64, or None for unconditional jobs."""
    if spec.labels == "none":
        return None
    if spec.labels == "fixed":
        return torch.full((stop - start,), spec.label, dtype=torch.int64, device=device)
    if spec.labels == "balanced":
        return torch.arange(start, stop, dtype=torch.int64, device=device) % spec.num_classes
    return samplers.SampleNoise(spec.seed, start, stop - start, device).labels(spec.num_classes)


def describe(sampler: samplers.Sampler) -> str:
    """'heun(steps=32, time_dist=uniform)': the settings an error message should name."""
    state = sampler.save()
    keys = [k for k in ("steps", "time_dist", "time_kwargs") if k in state]
    return f"{state['name']}(" + ", ".join(f"{k}={state[k]}" for k in keys) + ")"


@torch.inference_mode()
def sample_batch(
    sampler: samplers.Sampler, net: samplers.Field, g_net: samplers.Field | None, spec: SampleSpec,
    start: int, stop: int, device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(samples (n, *shape) float32 on CPU, labels (n,) or None) for indices [start, stop)."""
    labels = labels_for(spec, start, stop, device)
    x = sampler.sample(
        stop - start, device, net=net, shape=spec.shape, seed=spec.seed, start_index=start, labels=labels,
        g_net=g_net, guidance_scale=spec.guidance_scale,
    )
    finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if not bool(finite.all()):
        bad = (start + torch.nonzero(~finite).flatten().cpu()).tolist()
        raise NonFiniteSamplesError(
            f"non-finite samples at indices {bad[:10]}{' ...' if len(bad) > 10 else ''} "
            f"({len(bad)} of {stop - start}) with sampler {describe(sampler)}, "
            f"guidance_scale={spec.guidance_scale}; try more steps or another time_dist"
        )
    return x.float().cpu(), (labels.cpu() if labels is not None else None)


def sample_shard(
    sampler: samplers.Sampler, net: samplers.Field, g_net: samplers.Field | None, spec: SampleSpec,
    shard: Shard, batch_size: int, device: torch.device | str,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples of the shard in its fixed batches: (float32 (n, *shape), int64 labels (n,) or None)."""
    xs, ys = [], []
    for b_start, b_stop in shard_batches(shard, batch_size):
        x, y = sample_batch(sampler, net, g_net, spec, b_start, b_stop, device)
        xs.append(x.numpy())
        ys.append(y.numpy() if y is not None else None)
    labels = None if ys[0] is None else np.concatenate(ys)
    return np.concatenate(xs), labels

