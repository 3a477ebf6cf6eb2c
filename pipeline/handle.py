"""`SamplingHandle`: a model and a sampler in this process, for notebooks and scripts.

    handle = SamplingHandle.from_config("configs/demo.yaml")      # the job's model, sampler and labels
    handle.set_sampler(samplers.build("dpmpp_2m", steps=10))
    x = handle.sample(16, seed=0, start_index=0)                   # (16, 1, 8, 8) float32

It runs the same code as the Ray actor (`sampling.sample_shard`), so for the same seed,
indices and batch size it returns exactly the samples a distributed job stores as float32.
"""

from __future__ import annotations

from typing import Any

import torch

import samplers

from .conditioning import ConditioningTable, load_table
from .config import JobConfig, load_config
from .decoder import LatentDecoder, build_decoder
from .network import build_fields, model_identity
from .output.fs import open_output
from .run.resume import resolve_noise_scheme
from .run.plan import Shard
from .run.sampling import SampleSpec, build_sampler, sample_shard


class SamplingHandle:
    """Holds a field (a wrapped network), an optional guide and a sampler on one device."""

    def __init__(self, net: Any, *, shape: tuple[int, ...] | list[int], interface: str | None = None,
                 sampler: samplers.Sampler | None = None, device: torch.device | str = "cpu",
                 g_net: samplers.Field | None = None, num_classes: int | None = None, null_label: int | None = None,
                 batch_size: int = 256, **interface_kwargs: Any) -> None:
        """`net` is a Field, or a raw module wrapped with `interface`; `g_net` a guide field (autoguidance);
        with `num_classes`, guidance uses the null label (default: num_classes) instead."""
        self.device = torch.device(device)
        if isinstance(net, samplers.Field):
            self.net = net
        else:
            if interface is None:
                raise ValueError("SamplingHandle: a raw network needs interface= ('flow', 'edm', 'vp_eps', 'meanflow')")
            self.net = samplers.wrap(net.to(self.device).eval(), interface, **interface_kwargs)
        self.g_net, self.shape, self.num_classes = g_net, tuple(shape), num_classes
        self.null_label = null_label if null_label is not None else num_classes
        self.sampler, self.batch_size = sampler, batch_size
        self.spec_defaults: dict[str, Any] = {}
        self.conditioning: ConditioningTable | None = None  # network keywords per index (conditioning.table)
        self.decoder: LatentDecoder | None = None  # latents -> images (model.decoder)

    @classmethod
    def from_config(cls, config: JobConfig | str, overrides: list[str] | tuple[str, ...] = (),
                    device: torch.device | str = "cpu") -> "SamplingHandle":
        """The model, guide, sampler, labels, seed and batch size of a job config."""
        cfg = load_config(config, overrides) if isinstance(config, str) else config
        cfg = resolve_noise_scheme(*open_output(cfg.run.output, cfg.run.storage_options, create=False), cfg)
        options, seed, guide = cfg.run.storage_options, cfg.run.seed, cfg.model.guide
        # as a job builds it: the factory under torch's RNG seeded with run.seed, then the checkpoint
        weights = model_identity(cfg.model, options, seed)[1]
        guide_weights = model_identity(guide, options, seed)[1] if guide is not None else None
        net, g_net = build_fields(cfg.model, cfg.sampler.guidance_scale, device, weights, guide_weights, seed=seed,
                                  negatives=cfg.table_negatives)
        handle = cls(net, shape=cfg.model.shape, sampler=build_sampler(cfg), device=device, g_net=g_net,
                     num_classes=cfg.model.num_classes, null_label=cfg.model.null_label, batch_size=cfg.run.batch_size)
        handle.spec_defaults = dict(seed=cfg.run.seed, labels=cfg.run.labels, label=cfg.run.label,
                                    guidance_scale=cfg.sampler.guidance_scale, noise_scheme=cfg.run.noise_scheme)
        handle.conditioning, handle.decoder = load_table(cfg), build_decoder(cfg.model, device, seed)
        return handle

    def set_sampler(self, sampler: samplers.Sampler) -> "SamplingHandle":
        self.sampler = sampler
        return self

    def sample(self, N: int, *, seed: int | None = None, start_index: int = 0, labels: str | int | None = None,
               guidance_scale: float | None = None, batch_size: int | None = None,
               noise_scheme: str | None = None) -> torch.Tensor:
        """Samples of indices start_index .. start_index + N - 1: (N, *shape) float32 on the CPU.
        `labels`: 'balanced' | 'uniform' | a fixed class | None (unconditional); `noise_scheme`: a key of
        samplers.NOISE_SCHEMES. Defaults come from the config (its output's own noise scheme, if it has one)."""
        if self.sampler is None:
            raise ValueError("SamplingHandle: no sampler; call set_sampler(samplers.build(...)) first")
        d = self.spec_defaults
        mode, label = (labels, None) if isinstance(labels, str) else ("fixed", labels) if labels is not None else (
            d.get("labels", "none"), d.get("label"))
        w = guidance_scale if guidance_scale is not None else d.get("guidance_scale", 1.0)
        spec = SampleSpec(seed=seed if seed is not None else d.get("seed", 0), shape=self.shape, labels=mode,
                          label=label, num_classes=self.num_classes, guidance_scale=w, conditioning=self.conditioning,
                          decoder=self.decoder, noise_scheme=noise_scheme or d.get("noise_scheme", samplers.DEFAULT_NOISE_SCHEME))
        g_net = None
        if w != 1.0:
            negatives = self.conditioning is not None and self.conditioning.negatives
            if self.g_net is None and self.num_classes is None and not negatives:
                raise ValueError(f"guidance_scale={w} needs a guide: g_net= (autoguidance), num_classes= (CFG) or "
                                 "a conditioning table's negatives")
            g_net = self.g_net or (samplers.null_condition(self.net, self.null_label) if self.num_classes is not None
                                   else self.net)
        shard = Shard(index=0, start=start_index, stop=start_index + N)
        x, _, _ = sample_shard(self.sampler, self.net, g_net, spec, shard, batch_size or self.batch_size, self.device)
        return torch.from_numpy(x)

    def save(self) -> dict[str, Any]:
        """The sampler's state."""
        return self.sampler.save()

    def load(self, **state: Any) -> "SamplingHandle":
        """Replace the sampler by the one `state` describes."""
        self.sampler = samplers.from_state(state)
        return self
