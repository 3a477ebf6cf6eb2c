"""The driver: one job config -> N samples written as shards, with a manifest.

`run_job(cfg)` is `finalize(plan, execute(plan))` with `plan = prepare(cfg)`:

* `prepare` validates and reads only: the output (refuse a different job there, verify what a
  previous run committed), the sampler and its fit with the model's interface, the network (built
  once under a torch RNG seeded from run.seed, then the checkpoint), the job fingerprint
  (fingerprint.py), the FID reference. It returns a frozen `JobPlan`.
* `execute` starts or joins Ray and `num_workers` SamplerWorker actors with the sampler state and
  weights in the object store. Only then is anything under the output written or removed: the
  `running` manifest (and, with `run.overwrite`, the previous job's files go). A `ShardScheduler`
  keeps `max_in_flight` shards per actor; a failure writes the `failed` manifest, keeping every
  finished shard.
* `finalize` writes the FID report, the final manifest (`complete`, or `failed` with the skipped
  shards) and the grid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import samplers

from ..config import JobConfig
from ..fid.job import absolute_weights, fan_out_stats
from ..fid.reference import fid_report, load_reference, reference_url, write_report
from ..fid.sources import split
from ..fid.stats import FeatureStats
from ..grid import GRID_NAME, save_grid
from ..conditioning import table_identity
from ..decoder import decoder_identity
from ..models.diffusers_folder import FACTORY as DIFFUSERS_FACTORY
from ..network import check_model, coverage_warning, identify_network
from ..output.committed import missing_shards
from ..output.fs import absolute_local, open_output, protocols
from ..output.layout import job_version, side_path
from ..output.lease import Lease, check_lease
from ..output.manifest import Manifest, write_manifest
from ..output.record import ShardRecord
from ..redact import scrub
from .cluster import ray_session, wait_for_resources
from .errors import JobError
from .fingerprint import job_runtime
from .interrupt import interrupts_raise
from .plan import Shard, iter_shards
from .preflight import check_forward, check_sampler
from .progress import Progress
from .result import ShardResult
from .resume import (
    as_recorded, begin_output, check_output, job_schema, manifest_config, previous_manifest, resolve_noise_scheme,
)
from .sampling import build_sampler
from .scheduler import ShardScheduler
from .submission import check_output_location
from .worker import MALLOC_ENV, SamplerWorker

__all__ = ["JobError", "JobPlan", "build_sampler", "execute", "finalize", "prepare", "run_job"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobPlan:
    """Everything `prepare` found out, for `execute` and `finalize`: the job, its output (`fs`, `root`),
    the sampler state, the model identity and weights, the shards already done and those to run."""

    cfg: JobConfig
    fs: Any
    root: str
    sampler_state: dict[str, Any]
    model: dict[str, Any]
    weights: Any
    guide_weights: Any
    done: tuple[ShardRecord, ...]
    todo: tuple[Shard, ...]
    manifest: Manifest  # the `running` manifest, written when execution starts


@dataclass
class JobResults:
    """What `execute` produced: every committed shard by index (resumed and new), merged feature
    statistics, the errors of skipped shards, the metrics, and the manifest last written."""

    records: dict[int, ShardRecord]
    stats: FeatureStats = field(default_factory=FeatureStats)
    skipped: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    manifest: Manifest | None = None
    seconds: float = 0.0
    lease: Lease | None = None  # held from the first write under the output until finalize


def _checked_model(model_cfg: Any, storage_options: dict[str, Any], seed: int) -> tuple[dict[str, Any], Any, Any]:
    """(identity, weights: the full state of the network built once under `seed`, that network); ModelError when
    factory, checkpoint and interface do not fit."""
    identity, weights, net = identify_network(model_cfg, storage_options, seed)
    check_model(model_cfg, weights, net)
    return identity, weights, net


def prepare(cfg: JobConfig) -> JobPlan:
    """Check everything that can be checked before Ray starts and before anything is written."""
    check_output_location(cfg.run.output)
    fs, root = open_output(cfg.run.output, cfg.run.storage_options, create=False)  # checked, not written
    if "memory" in protocols(fs):
        raise JobError(f"run.output={cfg.run.output!r}: memory:// lives in one process and Ray workers cannot share it; "
                       "use a local path or an object store (s3://, gs://)")
    cfg = resolve_noise_scheme(fs, root, cfg)
    noise_scheme = samplers.NOISE_SCHEMES[cfg.run.noise_scheme].description
    sampler = build_sampler(cfg)
    sampler_state = sampler.save()
    check_sampler(cfg, sampler)  # before any model code runs
    if cfg.metrics.fid is not None:  # a missing or malformed reference fails now, not after hours of sampling
        load_reference(reference_url(cfg.metrics.fid.extractor, cfg.metrics.fid.ref))
    model, weights, net = _checked_model(cfg.model, cfg.run.storage_options, cfg.run.seed)
    if warning := coverage_warning(cfg.model, sampler):
        log.warning("sampler: %s", warning)
    if cfg.conditioning is not None:  # checked (columns, rows) before Ray starts; its sha256 is part of the model
        model["conditioning"] = table_identity(cfg)
    if cfg.model.decoder is not None:  # the decoder's weights are part of what the stored images depend on
        model["decoder"] = decoder_identity(cfg.model, cfg.run.seed)
    guide_weights = guide_net = None
    if cfg.model.guide is not None:
        model["guide"], guide_weights, guide_net = _checked_model(cfg.model.guide, cfg.run.storage_options, cfg.run.seed)
    check_forward(cfg, sampler, weights, guide_weights, nets=(net, guide_net))  # the networks built above
    check_lease(fs, root, cfg.run.output, cfg.run.take_over_lease)  # another driver writing there: fail now
    previous = previous_manifest(fs, root, cfg)
    model, runtime = as_recorded(previous, cfg, model, job_runtime(cfg))  # an output written before newer fields
    done, fingerprint = check_output(fs, root, cfg, model, sampler_state, noise_scheme, runtime)
    manifest = Manifest(
        status="running", config=manifest_config(cfg), sampler_state=sampler_state, model=model,
        schema=job_schema(cfg), noise_scheme=noise_scheme, num_samples=cfg.run.num_samples,
        fingerprint=fingerprint, runtime=runtime,
        shards=list(done.values()), format_version=job_version(fs, root, cfg.run.overwrite),
    )
    if done and previous is not None:  # a resume: created when its first shards were
        manifest = manifest.model_copy(update={"created": previous.created})
    todo = tuple(s for s in iter_shards(cfg.run.num_samples, cfg.run.shard_size) if s.index not in done)
    return JobPlan(cfg, fs, root, sampler_state, model, weights, guide_weights, tuple(done.values()), todo, manifest)


def execute(plan: JobPlan, progress: str | None = None) -> JobResults:
    """Run the plan's shards on Ray actors (and featurise resumed shards for FID); on failure, write the
    `failed` manifest (if the output was begun) keeping every finished shard, and raise."""
    cfg, fid = plan.cfg, plan.cfg.metrics.fid
    results = JobResults(records={r.index: r for r in plan.done})
    bar = Progress(cfg.run.num_samples, sum(r.rows for r in plan.done), progress or cfg.run.progress)

    def on_done(result: ShardResult) -> None:
        if result.record is not None:
            results.records[result.record.index] = result.record
        if result.stats is not None:
            results.stats.merge(result.stats)
        bar.update(result.rows)

    resumed = [r.path for r in plan.done]  # their feature statistics are recomputed from the files

    def begin() -> Manifest:
        fs, root = open_output(cfg.run.output, cfg.run.storage_options)
        results.lease = Lease.acquire(fs, root, cfg.run.output, cfg.run.take_over_lease).start()
        return begin_output(cfg, plan.manifest)

    t0 = time.monotonic()
    try:
        with interrupts_raise():
            if plan.todo or (fid and resumed):
                with ray_session(cfg.cluster), interrupts_raise():  # ray.init installs its own SIGTERM handler
                    if plan.todo:
                        actors, new_actor = start_workers(cfg, plan.sampler_state, plan.weights, plan.guide_weights,
                                                          worker_expectations(plan))
                    results.manifest = begin()
                    if plan.todo:
                        results.skipped = dispatch(actors, new_actor, list(plan.todo), cfg, on_done)
                    if fid and resumed:
                        results.stats.merge(shard_stats(cfg, resumed))
            else:
                results.manifest = begin()
            if fid is not None and not results.skipped:
                results.metrics = {"fid": fid_report(results.stats, fid.extractor, fid.ref)}
    except (Exception, KeyboardInterrupt) as e:
        bar.close()
        if results.manifest is not None:  # nothing under the output is written before the job is sure to start
            end_failed(plan, results, e)
        if results.lease is not None:
            results.lease.release()
        raise
    bar.close()
    results.seconds = time.monotonic() - t0
    return results


def finalize(plan: JobPlan, results: JobResults) -> Manifest:
    """Write the FID report, the final manifest and the grid; returns the manifest (status complete), or
    raises JobError when shards were skipped (the rest is written)."""
    cfg, fid, metrics = plan.cfg, plan.cfg.metrics.fid, results.metrics
    if metrics:
        write_report(plan.fs, plan.root, metrics["fid"])
        print(f"seedshard: FID {metrics['fid']['fid']:.4f} ({fid.extractor} features, {results.stats.n} samples "
              f"vs {metrics['fid']['reference']})", flush=True)
    skipped = results.skipped
    try:
        missing = missing_shards(plan.fs, plan.root, results.records.values(), results.manifest.format_version)
        if missing:  # lost by the storage after their commit: not listed, so a rerun regenerates them
            for index in missing:
                del results.records[index]
            error = JobError(f"{len(missing)} committed shard(s) are missing or changed in storage: "
                             f"{', '.join(missing.values())}; rerun to regenerate them")
            end_failed(plan, results, error)
            raise error
        if not skipped and results.lease is not None:
            results.lease.confirm()  # another driver took the output over: do not declare it complete
        manifest = write_manifest(plan.fs, plan.root, results.manifest.model_copy(update={
            "status": "failed" if skipped else "complete", "shards": sorted(results.records.values(), key=lambda r: r.index),
            "error": ("; ".join(skipped) if skipped else None), "metrics": metrics}))
        if cfg.run.grid and manifest.shards:
            save_grid(cfg.run.output, side_path(cfg.run.output, GRID_NAME, manifest.format_version), n=cfg.run.grid,
                      storage_options=cfg.run.storage_options)
    finally:
        if results.lease is not None:
            results.lease.release()
    log.info("%d samples in %.1fs", cfg.run.num_samples, results.seconds)
    if skipped:
        raise JobError(f"{len(skipped)} shard(s) skipped (run.on_nonfinite=skip); the rest is written: {skipped[0]}")
    return manifest


def run_job(cfg: JobConfig, *, progress: str | None = None) -> Manifest:
    """Generate the job's samples; returns the final manifest (status complete), raises JobError otherwise."""
    plan = prepare(cfg)
    return finalize(plan, execute(plan, progress))


def worker_expectations(plan: JobPlan) -> dict[str, Any]:
    """What every worker must find true of itself before it samples (SamplerWorker checks it): the weights'
    sha256 (model, guide), the conditioning table's identity (its and its text encoder's sha256), device type and torch
    version; and the fingerprint its shards carry."""
    m = plan.manifest
    return {"sha256": (m.model["sha256"], m.model.get("guide", {}).get("sha256")), "fingerprint": m.fingerprint,
            "conditioning": m.model.get("conditioning"), **m.runtime}


def end_failed(plan: JobPlan, results: JobResults, error: BaseException) -> None:
    """Write the `failed` (or, after a signal, `interrupted`) manifest with every finished shard. A manifest that
    cannot be written does not hide `error`: its own failure is logged and `error` goes on."""
    status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    try:
        results.manifest = write_manifest(plan.fs, plan.root, results.manifest.model_copy(update={
            "status": status, "shards": sorted(results.records.values(), key=lambda r: r.index),
            "error": scrub(str(error) or type(error).__name__, plan.cfg.run.storage_options)}))
    except Exception as e:  # noqa: BLE001 - e.g. the output folder was removed: the cause is `error`
        log.warning("could not write the %s manifest: %s", status, scrub(str(e) or type(e).__name__,
                                                                          plan.cfg.run.storage_options))


def worker_config(cfg: JobConfig) -> dict[str, Any]:
    """`cfg.resolved()` with the local paths the workers open made absolute in the driver's working directory
    (run.output, diffusers folders, conditioning table and text encoder, extractor weights): on a cluster it joined
    (RAY_ADDRESS, cluster.address) their working directory is the raylet's. Files the driver reads stay as given."""
    config = cfg.resolved()
    config["run"]["output"] = absolute_local(cfg.run.output)
    model = config["model"]
    for section in (model, model.get("guide"), model.get("decoder")):
        if section is None:
            continue
        if section.get("diffusers") is not None:
            section["diffusers"]["path"] = absolute_local(section["diffusers"]["path"])
        if section.get("factory") == DIFFUSERS_FACTORY and isinstance(section["kwargs"].get("path"), str):
            section["kwargs"]["path"] = absolute_local(section["kwargs"]["path"])
    cond = config.get("conditioning")
    if cond is not None:
        cond["table"] = absolute_local(cond["table"])
        if cond["text_encoder"] is not None:
            cond["text_encoder"] = absolute_local(cond["text_encoder"])
    fid = config["metrics"].get("fid")
    if fid is not None:
        fid["extractor_kwargs"] = absolute_weights(fid["extractor_kwargs"])
    return config


def start_workers(cfg: JobConfig, sampler_state: dict[str, Any], weights: Any,
                  guide_weights: Any, expect: dict[str, Any] | None = None) -> tuple[list[Any], Callable[[], Any]]:
    """num_workers SamplerWorker actors, ready (model built and checked against `expect`) before sampling
    starts, and their factory."""
    import ray

    wait_for_resources(cfg.cluster)
    c = cfg.cluster
    # Restarts are the driver's (it replaces a dead actor), so Ray's own are off.
    actor_cls = ray.remote(SamplerWorker).options(
        num_cpus=c.cpus_per_worker, num_gpus=c.gpus_per_worker, max_restarts=0, max_concurrency=2,
        runtime_env={"env_vars": MALLOC_ENV})  # merged with the job's runtime_env
    weight_refs = [ray.put(weights), ray.put(guide_weights)]  # one copy in the object store, shared by all actors
    config = worker_config(cfg)

    def new_actor() -> Any:
        return actor_cls.remote(config, sampler_state, weight_refs, expect)

    actors = [new_actor() for _ in range(c.num_workers)]
    try:
        infos = ray.get([a.ready.remote() for a in actors])
    except ray.exceptions.RayActorError as e:  # the constructor raised: its error is the message's last line
        lines = [line for line in (getattr(e, "error_msg", "") or str(e)).splitlines() if line.strip()]
        raise JobError(f"a worker failed to start: {lines[-1].strip() if lines else type(e).__name__}") from None
    log.info("workers ready: %s", infos)
    return actors, new_actor


def dispatch(actors: list[Any], new_actor: Callable[[], Any], shards: list[Shard], cfg: JobConfig,
             on_done: Callable[[ShardResult], None]) -> list[str]:
    """Run `shards` on `actors` with a ShardScheduler given the job's cluster settings; returns the errors
    of skipped shards (run.on_nonfinite=skip), raises JobError on failure."""
    c = cfg.cluster
    scheduler = ShardScheduler(actors, new_actor, shards, max_in_flight=c.max_in_flight, max_restarts=c.max_restarts,
                               max_shard_attempts=c.max_shard_attempts, skip_nonfinite=cfg.run.on_nonfinite == "skip",
                               shard_timeout_s=c.shard_timeout_s, retry_backoff_s=c.retry_backoff_s)
    return scheduler.run(on_done)


def shard_stats(cfg: JobConfig, paths: list[str]) -> FeatureStats:
    """Feature statistics of committed shards, read back and featurised by Ray tasks."""
    c, fid = cfg.cluster, cfg.metrics.fid
    return fan_out_stats(cfg.run.output, "output", split(paths, c.num_workers), fid.extractor, fid.extractor_kwargs,
                         cfg.run.storage_options, num_cpus=c.cpus_per_worker, num_gpus=c.gpus_per_worker)
