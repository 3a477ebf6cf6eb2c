"""Preflight: the deterministic checks `prepare` runs before Ray starts and before anything is written,
beyond what the config schema checks on its own (bounds, finite numbers, FID and grid needs).

Two steps, so that no code of the model runs before the rest of the job is accepted (a job file is
code: `model.factory` is imported and called):

* `check_sampler` (no model code): the sampler's real time grid against the model's interface (an
  integrator that needs another interface, a grid that starts above the interface's t_max).
* `check_forward`: one forward pass of the network, and of the guide, on a single sample on the
  driver's CPU at the grid's first time, with the largest class label the job uses (the guide of
  classifier-free guidance with the null label): the output must be a floating tensor of the input's
  shape, and finite. `model.preflight: false` skips it, for networks too large for the driver.

A failure is a ConfigError (exit 2, one line): it cannot go away by retrying on a worker.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

import samplers

from ..conditioning import load_table
from ..config import ConfigError, JobConfig
from ..network import build_fields, cpu_config

_HINT = "set model.preflight=false to skip this check"


def check_sampler(cfg: JobConfig, sampler: samplers.Sampler) -> None:
    """ConfigError when `sampler`'s integrator or time grid cannot run with the interface of the model (and
    guide); built from the interface alone, without importing model.factory."""
    if not isinstance(sampler, samplers.StepSampler):
        return
    model = cfg.model
    guide = model.guide if model.guide is not None else model
    try:
        net = samplers.wrap(None, model.interface, **model.interface_kwargs)
        g_net = samplers.wrap(None, guide.interface, **guide.interface_kwargs) if cfg.sampler.guidance_scale != 1 else None
    except (TypeError, ValueError):
        return  # bad interface_kwargs: the model check names them
    check_sampler_fits(sampler, net, g_net, model.interface)
    check_guidance_interval(cfg, sampler)


def check_guidance_interval(cfg: JobConfig, sampler: samplers.StepSampler) -> None:
    """ConfigError when sampler.guidance_interval holds no time the network is evaluated at (the grid's, or up to
    sqrt(2) t above one where EDM churn raises it): the guide would never run and the samples be the unguided ones."""
    interval, scale = cfg.sampler.guidance_interval, cfg.sampler.guidance_scale
    if interval is None or scale == 1.0:
        return
    lo, hi = interval
    reach = math.sqrt(2.0) if getattr(sampler, "S_churn", 0.0) > 0 else 1.0  # t_hat = (1 + gamma) t, gamma <= sqrt2-1
    grid = sampler.sample_t().tolist()
    if not any(t <= hi and lo <= t * reach for t in grid):
        raise ConfigError(f"sampler.guidance_interval={interval} holds no time of the sampler's grid "
                          f"({', '.join(f'{t:g}' for t in grid[:8])}{' ...' if len(grid) > 8 else ''}): the guide "
                          f"would never run and guidance_scale={scale:g} change nothing; widen it or remove it")


def check_sampler_fits(sampler: samplers.Sampler, net: samplers.Field, g_net: samplers.Field | None,
                       interface: str) -> None:
    """ConfigError when `sampler` cannot run with these fields (built on the meta device are enough): an
    integrator that needs another interface (euler_jump needs meanflow), or a time grid that starts above
    the interface's t_max. The actors would otherwise fail on every shard."""
    if not isinstance(sampler, samplers.StepSampler):
        return
    try:
        sampler.check_fields(net, g_net, sampler.sample_t().tolist()[0])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"sampler.name={sampler.name!r} cannot run with model.interface={interface!r}: {e}") from None


class _Recorder(torch.nn.Module):
    """Calls `net` and keeps its last output."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net, self.out = net, None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.out = self.net(*args, **kwargs)
        return self.out if isinstance(self.out, torch.Tensor) else torch.zeros_like(args[0])


def _label(cfg: JobConfig) -> int | None:
    """The largest class label the job samples with, or None for an unconditional job."""
    if cfg.run.labels == "none":
        return None
    return cfg.run.label if cfg.run.labels == "fixed" else cfg.model.num_classes - 1


def check_forward(cfg: JobConfig, sampler: samplers.Sampler, weights: Any = None, guide_weights: Any = None,
                  nets: tuple[Any, Any] = (None, None)) -> None:
    """ConfigError unless one forward pass of the network (and guide) on one sample at the grid's first time
    gives a finite floating tensor shaped like the sample; skipped with model.preflight=false. `nets`: the
    networks (model, guide) `identify_network` built, used instead of building them again."""
    if not cfg.model.preflight or not isinstance(sampler, samplers.StepSampler):
        return
    negatives = cfg.table_negatives
    net, g_net = build_fields(cpu_config(cfg.model), cfg.sampler.guidance_scale, "cpu", weights, guide_weights,
                              seed=cfg.run.seed, nets=nets, negatives=negatives)
    table = load_table(cfg)  # conditioning.table: the network keywords of sample 0 (and of its extreme class labels)
    for row in sorted({0, *table.label_rows(cfg.run.num_samples)}) if table is not None else [0]:
        _forward_once(cfg, sampler, net, g_net, table, row, negatives)


def _forward_once(cfg: JobConfig, sampler: samplers.StepSampler, net: samplers.Field, g_net: samplers.Field | None,
                  table: Any, row: int, negatives: bool) -> None:
    """check_forward on one sample: the network (and guide) on row `row`'s conditioning."""
    t = float(sampler.sample_t()[0])
    shape = (1, *cfg.model.shape)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=sampler.torch_dtype) * net.prior_scale(t)
    label = _label(cfg)
    kwargs = {} if label is None else {"class_labels": torch.tensor([label])}
    kwargs |= table.kwargs(row, row + 1) if table is not None else {}
    where = f"on one sample at t={t:g}" + ("" if label is None else f" with class label {label}")
    if "class_labels" in kwargs and label is None:
        where += f" with conditioning.table row {row} (class label {int(kwargs['class_labels'][0])})"
    roles = [("model", net, kwargs)]
    if g_net is not None and cfg.model.guide is not None:
        roles.append(("model.guide", g_net, kwargs))
    elif g_net is not None and cfg.model.num_classes is not None:
        roles.append((f"model.null_label={cfg.model.null_label} (classifier-free guide)", g_net, kwargs))
    if g_net is not None and negatives:  # the table's negatives in place of its keywords
        roles.append(("conditioning negatives (classifier-free guide)", g_net, kwargs | table.guide_kwargs(row, row + 1)))
    for role, field, role_kwargs in roles:
        probe = copy.copy(field)
        probe.net = recorder = _Recorder(field.net)
        error = None
        try:
            with torch.inference_mode():
                probe.velocity(x, t, **role_kwargs)
        except Exception as e:  # noqa: BLE001 - user code: one line naming what ran, after the output checks
            error = e
        out = recorder.out
        if out is None and error is not None:  # the network itself raised
            _raise_failed(role, where, error)
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            got = f"a {out.dtype} tensor" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(f"{role}: the network returned {got} {where}; expected a floating-point tensor ({_HINT})")
        if tuple(out.shape) != shape:
            raise ConfigError(f"{role}: the network's output {where} has shape {list(out.shape)}, expected "
                              f"{list(shape)} (1 x model.shape) ({_HINT})")
        if not bool(torch.isfinite(out).all()):
            raise ConfigError(f"{role}: the network's output {where} is not finite (NaN or Inf) ({_HINT})")
        if error is not None:  # the interface failed on a well-formed output
            _raise_failed(role, where, error)


def _raise_failed(role: str, where: str, error: Exception) -> None:
    first = (str(error).strip().splitlines() or [""])[0]
    raise ConfigError(f"{role}: one forward pass {where} on the driver's CPU failed: "
                      f"{type(error).__name__}: {first} ({_HINT})") from None
