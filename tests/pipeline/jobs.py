"""Small job configs for pipeline tests: the exact Gaussian model, so jobs are fast and checkable."""

from __future__ import annotations

import hashlib
import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from pipeline.config import validate_config


DELETE = object()  # as a value in set_path: remove the key


def set_path(data: dict, dotted: str, value: Any) -> None:
    """Set `data[a][b][c] = value` for dotted = "a.b.c" (creating sections), or remove the key if value is DELETE."""
    *parents, leaf = dotted.split(".")
    for p in parents:
        data = data.setdefault(p, {})
    if value is DELETE:
        data.pop(leaf, None)
    else:
        data[leaf] = value


def gaussian_job(output: str, **sections: dict[str, Any]) -> Any:
    """A JobConfig sampling the exact edm field of N(0.5, 0.8^2) data with Heun; `sections` update the defaults."""
    data = {
        "run": {"num_samples": 70, "seed": 1, "shard_size": 20, "batch_size": 8, "output": output, "progress": "none"},
        "model": {"factory": "pipeline.models.gaussian:build_gaussian", "kwargs": {"interface": "edm"},
                  "interface": "edm", "shape": [3, 4]},
        "sampler": {"name": "heun", "steps": 8, "time_dist": "karras"},
        "cluster": {"num_workers": 2},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return validate_config(data)


def _in_actor() -> bool:
    """True inside a Ray actor (a worker), False on the driver."""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


def build_only_on_driver(**kwargs: Any) -> Any:
    """A factory that fails inside a Ray actor (to test a worker that cannot start)."""
    if _in_actor():
        raise RuntimeError("this model cannot be built on a worker")
    from pipeline.models.gaussian import build_gaussian

    return build_gaussian(**kwargs)


class ProbeNet(torch.nn.Module):
    """The exact Gaussian network with test hooks. With `run.labels: balanced` and `model.num_classes`
    above num_samples, a sample's class label is its index, so hooks can pick samples: NaN output for
    `nan_indices`, a constant 1e5 (finite, too big for float16) for `huge_indices`, the worker process exits (os._exit) on
    `exit_indices`, raises RuntimeError on `raise_indices` and, once per index (a marker file in `flaky_dir`),
    ConnectionResetError on `flaky_indices` (a transient storage-like error). `delay_s` sleeps per call;
    `marker_dir` gets an empty file named after the pid of each Ray worker process that runs the network (not the
    driver's, whose preflight runs it once); in those worker processes a call waits while the file `hold_file` exists
    (only a call for one of `hold_indices`, when given)."""

    def __init__(self, interface: str = "edm", delay_s: float = 0.0, marker_dir: str | None = None,
                 nan_indices: list[int] = (), exit_indices: list[int] = (), huge_indices: list[int] = (),
                 raise_indices: list[int] = (), flaky_indices: list[int] = (), flaky_dir: str | None = None,
                 hold_file: str | None = None, hold_indices: list[int] = ()) -> None:
        super().__init__()
        from pipeline.models.gaussian import build_gaussian

        self.net = build_gaussian(interface)
        self.delay_s, self.marker_dir = delay_s, marker_dir
        self.nan_indices, self.exit_indices, self.huge_indices = list(nan_indices), list(exit_indices), list(huge_indices)
        self.marked = False
        self.raise_indices, self.flaky_indices, self.flaky_dir = list(raise_indices), list(flaky_indices), flaky_dir
        self.hold_file, self.hold_indices = hold_file, list(hold_indices)

    def _holds(self, class_labels: torch.Tensor | None) -> bool:
        """Whether this call waits on `hold_file`: every call, or one for a sample of `hold_indices`."""
        if not self.hold_indices:
            return True
        return class_labels is not None and bool(torch.isin(class_labels, torch.tensor(self.hold_indices)).any())

    def forward(self, x: torch.Tensor, *times: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.marker_dir and not self.marked and _in_actor():
            pathlib.Path(self.marker_dir, str(os.getpid())).touch()
            self.marked = True
        while self.hold_file and os.path.exists(self.hold_file) and _in_actor() and self._holds(class_labels):
            time.sleep(0.02)
        time.sleep(self.delay_s)
        out = self.net(x, *times)
        if class_labels is not None and self.exit_indices and torch.isin(class_labels, torch.tensor(self.exit_indices)).any():
            os._exit(3)  # a crash that takes the whole worker process down
        if class_labels is not None and self.raise_indices and torch.isin(class_labels, torch.tensor(self.raise_indices)).any():
            raise RuntimeError("the network refuses these samples")
        for i in self.flaky_indices if class_labels is not None else ():
            marker = pathlib.Path(self.flaky_dir, f"flaky-{i}")
            if (class_labels == i).any() and not marker.exists():
                marker.touch()
                raise ConnectionResetError(f"connection reset while sampling index {i}")
        if class_labels is not None and self.nan_indices:
            bad = torch.isin(class_labels, torch.tensor(self.nan_indices)).reshape(-1, *[1] * (x.ndim - 1))
            out = torch.where(bad, torch.full_like(out, float("nan")), out)
        if class_labels is not None and self.huge_indices:
            big = torch.isin(class_labels, torch.tensor(self.huge_indices)).reshape(-1, *[1] * (x.ndim - 1))
            out = torch.where(big, torch.full_like(out, 1e5), out)
        return out


def probe_gaussian(**kwargs: Any) -> ProbeNet:
    """Factory of ProbeNet (`model.factory: tests.pipeline.jobs:probe_gaussian`)."""
    return ProbeNet(**kwargs)


def probe_job(output: str, **hooks: Any) -> Any:
    """gaussian_job with ProbeNet and labels equal to sample indices; `hooks` are ProbeNet kwargs."""
    return gaussian_job(output, run={"labels": "balanced"},
                        model={"factory": "tests.pipeline.jobs:probe_gaussian", "kwargs": hooks, "num_classes": 1000})


def job_identity(cfg: Any, version: int | None = None) -> tuple[dict[str, Any], Any, Any, str]:
    """(model identity with guide, weights, guide weights, fingerprint) of job `cfg`, as the driver finds them
    (``version``: the output format version; default: the current one)."""
    from pipeline.network import model_identity
    from pipeline.output.layout import FORMAT_VERSION
    from pipeline.run.fingerprint import fingerprint_fields, job_fingerprint, job_runtime
    from pipeline.run.sampling import build_sampler

    model, weights = model_identity(cfg.model, cfg.run.storage_options, cfg.run.seed)
    guide_weights = None
    if cfg.model.guide is not None:
        model["guide"], guide_weights = model_identity(cfg.model.guide, cfg.run.storage_options, cfg.run.seed)
    if cfg.model.decoder is not None:
        from pipeline.decoder import decoder_identity

        model["decoder"] = decoder_identity(cfg.model, cfg.run.seed)
    fields = fingerprint_fields(cfg, model, build_sampler(cfg).save(), noise_description(cfg), job_runtime(cfg),
                                version or FORMAT_VERSION)
    return model, weights, guide_weights, job_fingerprint(fields)


def noise_description(cfg: Any) -> str:
    """The manifest's noise_scheme of a new output of `cfg` (run.noise_scheme, `auto` as the default)."""
    import samplers
    from pipeline.run.sampling import noise_scheme

    return samplers.NOISE_SCHEMES[noise_scheme(cfg)].description


def shard_bytes(cfg: Any, version: int | None = None) -> Iterator[tuple[Any, bytes]]:
    """(shard, the bytes a job writes for it), computed in this process without Ray (``version``: the
    output format version; default: the current one)."""
    from pipeline.network import build_fields
    from pipeline.output.dtypes import to_stored
    from pipeline.output.layout import FORMAT_VERSION
    from pipeline.output.shards import encode_shard, shard_metadata
    from pipeline.run.plan import iter_shards
    from pipeline.run.sampling import SampleSpec, build_sampler, sample_shard

    sampler = build_sampler(cfg)
    _, weights, guide_weights, fingerprint = job_identity(cfg, version)
    net, g_net = build_fields(cfg.model, cfg.sampler.guidance_scale, "cpu", weights, guide_weights, seed=cfg.run.seed)
    meta = shard_metadata(cfg, sampler.save(), noise_description(cfg), fingerprint)
    for shard in iter_shards(cfg.run.num_samples, cfg.run.shard_size):
        x, y, _ = sample_shard(sampler, net, g_net, SampleSpec.from_config(cfg), shard, cfg.run.batch_size, "cpu")
        yield shard, encode_shard(np.arange(shard.start, shard.stop), y, to_stored(x, cfg.run.dtype),
                                  cfg.run.format, meta, version or FORMAT_VERSION)


def digests(manifest: Any) -> dict[int, str]:
    """{shard index: sha256} of a manifest."""
    return {s.index: s.sha256 for s in manifest.shards}


def reference_digests(cfg: Any) -> dict[int, str]:
    """sha256 of every shard of the job computed in this process: the bytes any run must produce."""
    return {shard.index: hashlib.sha256(data).hexdigest() for shard, data in shard_bytes(cfg)}


def payload_digest(data: bytes, fmt: str) -> str:
    """sha256 of a shard's indices, labels and samples, not its metadata: the same for two jobs whose
    samples are equal but whose fingerprints differ (say, a model kwarg that only adds a test hook)."""
    from pipeline.output.shards import decode_shard

    shard = decode_shard(data, fmt)
    h = hashlib.sha256(shard.indices.tobytes())
    h.update(b"" if shard.labels is None else shard.labels.tobytes())
    h.update(shard.samples.dtype.str.encode() + str(shard.samples.shape).encode() + shard.samples.tobytes())
    return h.hexdigest()


def payload_digests(url: str, manifest: Any) -> dict[int, str]:
    """{shard index: payload_digest} of the shards a manifest lists under `url`."""
    from pipeline.output.codecs import format_of
    from pipeline.output.fs import open_output

    fs, root = open_output(url)
    return {s.index: payload_digest(fs.cat_file(f"{root}/{s.path}"), format_of(s.path)) for s in manifest.shards}


def reference_payload_digests(cfg: Any) -> dict[int, str]:
    """payload_digest of every shard of the job computed in this process."""
    return {shard.index: payload_digest(data, cfg.run.format) for shard, data in shard_bytes(cfg)}


def write_output_in_process(cfg: Any, version: int | None = None) -> Any:
    """Write the complete output of `cfg` (shards, sidecars, manifest) as run_job does, without Ray
    (``version``: the output format version; 1 writes the older layout)."""
    from pipeline.output.fs import open_output
    from pipeline.output.manifest import Manifest, write_manifest
    from pipeline.output.shards import commit_shard, shard_name
    from pipeline.run.fingerprint import job_runtime
    from pipeline.run.resume import job_schema, manifest_config
    from pipeline.run.sampling import build_sampler

    from pipeline.output.layout import FORMAT_VERSION

    version = version or FORMAT_VERSION
    fs, root = open_output(cfg.run.output, cfg.run.storage_options)
    model, _, _, fingerprint = job_identity(cfg, version)
    records = [commit_shard(fs, root, shard_name(shard.index, cfg.run.format), data,
                            {"index": shard.index, "start": shard.start, "stop": shard.stop, "fingerprint": fingerprint},
                            version)
               for shard, data in shard_bytes(cfg, version)]
    manifest = Manifest(status="complete", config=manifest_config(cfg), sampler_state=build_sampler(cfg).save(),
                        model=model, schema=job_schema(cfg), noise_scheme=noise_description(cfg),
                        num_samples=cfg.run.num_samples, shards=records, fingerprint=fingerprint, runtime=job_runtime(cfg),
                        format_version=version)
    return write_manifest(fs, root, manifest)


def snapshot(root: str | os.PathLike) -> dict[str, tuple[int, int, str]]:
    """{relative path: (size, mtime_ns, sha256)} of every file under a local directory, hidden ones included."""
    out = {}
    for path in sorted(pathlib.Path(root).rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def run_in_process(cfg: Any) -> Any:
    """The job's prepare, one SamplerWorker (the actor's class, built in this process: no Ray) for every shard,
    and finalize: the real code path of run_job without the scheduler."""
    from pipeline.run.driver import JobResults, finalize, prepare, worker_expectations
    from pipeline.run.resume import begin_output
    from pipeline.run.worker import SamplerWorker

    plan = prepare(cfg)
    manifest = begin_output(cfg, plan.manifest)
    worker = SamplerWorker(cfg.resolved(), plan.sampler_state, None, worker_expectations(plan))
    records = {r.index: r for r in plan.done} | {shard.index: worker.run(shard).record for shard in plan.todo}
    return finalize(plan, JobResults(records=records, manifest=manifest))
