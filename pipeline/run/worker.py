"""`SamplerWorker`: the Ray actor that samples and writes shards.

It builds the model once (weights arrive through the object store), restores the sampler
from its broadcast state, and for each shard samples, encodes and commits the file itself,
returning only metadata. `run(shard)` is idempotent: re-running a shard rewrites the same
bytes. With two calls in flight, one shard's encode and upload overlaps the next shard's
sampling (the actor runs two threads; only sampling holds the lock).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import torch

import samplers

from ..config import JobConfig
from ..fid.extractors import build_extractor
from ..fid.features import features_stats
from ..network import build_fields
from ..output.dtypes import to_stored
from ..output.fs import open_output
from ..output.layout import output_version
from ..output.shards import commit_shard, encode_shard, shard_metadata, shard_name
from .fingerprint import cpu_kernels, torch_threads, worker_device
from .plan import Shard
from .result import ShardResult
from .sampling import SampleSpec, check_stored, sample_shard


# glibc's malloc returns large freed blocks to the OS (munmap, heap trim), and the next allocation
# zero-fills fresh pages; threads other than the main one (an actor's calls run on one) allocate from
# arenas whose heaps cannot hold a block over 64 MiB, so such blocks are fresh mmaps every time. A CPU
# sampling loop then spends 10-30 % of its time in page faults, varying from process to process. The
# driver starts the actors with these variables, which glibc reads at process start: one arena, nothing
# under 1 GiB mmapped, nothing trimmed (other C libraries ignore them). Samples and bytes do not change.
MALLOC_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}


def check_runtime(expect: dict[str, Any], found: dict[str, str]) -> None:
    """RuntimeError naming what differs when this worker's device type, torch version or CPU kernels are not the
    job's (all are in its fingerprint: they change the bytes)."""
    wrong = [f"{k} {found[k]!r} (the job's: {expect[k]!r})" for k in ("device", "torch", "cpu")
             if k in expect and k in found and expect[k] != found[k]]
    if wrong:
        hint = (" (the job's CPU kernels are the driver's machine's: run the driver on a node like the workers, or "
                "set ATEN_CPU_CAPABILITY alike for the driver and the workers)") if any(w.startswith("cpu") for w in wrong) else ""
        raise RuntimeError(f"this worker runs {', '.join(wrong)}; the job's fingerprint needs the same on every "
                           f"worker{hint}")


class SamplerWorker:
    """Loads the model once; `run(shard)` samples, writes and commits one shard."""

    def __init__(self, config: dict[str, Any], sampler_state: dict[str, Any], weight_refs: list[Any] | None = None,
                 expect: dict[str, Any] | None = None):
        """`weight_refs`: [model weights ref or None, guide weights ref or None], fetched from the object store
        here (nested, so Ray keeps them pinned by the driver and a restarted actor fetches them again).
        `expect` (driver.worker_expectations): the weights' sha256, device type and torch version this worker
        must have (ModelError otherwise, so the job fails before any shard is written), and the fingerprint."""
        import ray

        expect = expect or {}
        weights, guide_weights = ray.get(weight_refs) if weight_refs else (None, None)
        self.cfg = JobConfig.model_validate(config)
        torch.set_num_threads(torch_threads(self.cfg))
        wanted = worker_device(self.cfg)  # a cuda job on a worker without CUDA fails the check below
        self.device = torch.device("cuda" if wanted == "cuda" and ray.get_gpu_ids() and torch.cuda.is_available() else "cpu")
        check_runtime(expect, {"device": self.device.type, "torch": torch.__version__, "cpu": cpu_kernels()})
        self.sampler = samplers.from_state(sampler_state)
        self.net, self.g_net = build_fields(self.cfg.model, self.cfg.sampler.guidance_scale, self.device, weights, guide_weights,
                                            seed=self.cfg.run.seed, sha256=expect.get("sha256", (None, None)),
                                            negatives=self.cfg.table_negatives)
        self.spec = SampleSpec.from_config(self.cfg, self.device, expect.get("conditioning"))
        self.fs, self.root = open_output(self.cfg.run.output, self.cfg.run.storage_options)
        self.fingerprint = expect.get("fingerprint")
        self.metadata = shard_metadata(self.cfg, sampler_state, samplers.NOISE_SCHEMES[self.spec.noise_scheme].description,
                                       self.fingerprint)
        fid = self.cfg.metrics.fid
        self.extractor = build_extractor(fid.extractor, device=self.device, **fid.extractor_kwargs) if fid else None
        self._sampling = threading.Lock()

    def ready(self) -> dict[str, Any]:
        """Where this worker runs: pid, device."""
        return {"pid": os.getpid(), "device": str(self.device)}

    def run(self, shard: Shard) -> ShardResult:
        """Sample, encode and commit `shard` (the record is None when metrics.fid.store_samples is false)."""
        run, fid = self.cfg.run, self.cfg.metrics.fid
        with self._sampling:
            t0 = time.perf_counter()  # sample_s excludes the wait for the other call's sampling
            samples, labels, latents = sample_shard(self.sampler, self.net, self.g_net, self.spec, shard, run.batch_size,
                                                    self.device)
            stored = to_stored(samples, run.dtype)
            check_stored(stored, shard.start, self.sampler, self.spec)
            stats = features_stats(self.extractor, stored, run.dtype) if self.extractor is not None else None
        t1 = time.perf_counter()
        record = None
        if fid is None or fid.store_samples:
            indices = torch.arange(shard.start, shard.stop, dtype=torch.int64).numpy()
            version = output_version(self.fs, self.root)  # the driver wrote the manifest: its layout is settled
            data = encode_shard(indices, labels, stored, run.format, self.metadata, version,
                                latents if run.store_latents else None)
            record = commit_shard(self.fs, self.root, shard_name(shard.index, run.format), data,
                                  {"index": shard.index, "start": shard.start, "stop": shard.stop,
                                   "fingerprint": self.fingerprint}, version)
        return ShardResult(rows=shard.size, record=record, stats=stats, sample_s=t1 - t0,
                           write_s=time.perf_counter() - t1)
