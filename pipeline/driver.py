"""The driver: one job config -> N samples written as shards, with a manifest.

Order of work: validate, check the output (refuse a different job there, verify what a
previous run committed), read the weights once and check they fit the model, start or join
Ray, start `num_workers` SamplerWorker actors with the sampler state and weights in the
object store. Only then is anything under the output written or removed: the `running`
manifest (and, with `run.overwrite`, the previous job's files go). Then keep `max_in_flight`
shards per actor with a plain `ray.wait` loop (a shard of a dead actor is re-queued, up to
`max_shard_attempts`), and write the final manifest last: `complete`, or `failed` with the
error, keeping every finished shard.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import samplers
from samplers.base import check_params

from .cluster import ray_session, wait_for_resources
from .output.fs import cleanup_temp, join_path, list_names, open_output, protocols
from .output.layout import SIDE_DIR, job_version, side_path
from .output.manifest import MANIFEST_NAME, Manifest, read_manifest, write_manifest
from .output.shards import ShardRecord, load_sidecars, shard_metadata, shard_name, shard_schema, verify_shard
from .config import ConfigError, JobConfig, config_diff
from .fid.job import fan_out_stats
from .fid.reference import fid_report, load_reference, reference_url, write_report
from .fid.sources import split
from .fid.stats import FeatureStats
from .grid import GRID_NAME, save_grid
from .redact import redact_options, redact_url, scrub
from .network import build_network, check_model, read_checkpoint, state_dict_sha256
from .plan import Shard, iter_shards, num_shards, shard_for
from .progress import Progress
from .sampling import NonFiniteSamplesError
from .worker import MALLOC_ENV, SamplerWorker

log = logging.getLogger(__name__)


class JobError(RuntimeError):
    """A job that cannot start or could not finish; finished shards are kept."""


def build_sampler(cfg: JobConfig) -> samplers.Sampler:
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


def model_identity(model_cfg: Any, storage_options: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """({factory, kwargs, checkpoint, sha256}, state dict or None): what the samples were drawn from.
    Raises ModelError when the factory, checkpoint or interface do not fit together."""
    identity = {"factory": model_cfg.factory, "kwargs": model_cfg.kwargs,
                "checkpoint": redact_url(model_cfg.checkpoint) if model_cfg.checkpoint else None}
    if model_cfg.checkpoint is not None:
        state, identity["sha256"] = read_checkpoint(model_cfg.checkpoint, storage_options)
        check_model(model_cfg, state)
        return identity, state
    identity["sha256"] = state_dict_sha256(build_network(model_cfg, "cpu").state_dict())
    check_model(model_cfg)
    return identity, None


def manifest_config(cfg: JobConfig) -> dict[str, Any]:
    """The resolved config as stored in the manifest: credentials in run.storage_options and in URLs masked."""
    config = cfg.resolved()
    config["run"]["storage_options"] = redact_options(config["run"]["storage_options"])
    config["run"]["output"] = redact_url(config["run"]["output"])
    for model in (config["model"], config["model"].get("guide")):
        if model and model.get("checkpoint"):
            model["checkpoint"] = redact_url(model["checkpoint"])
    return config


def _shard_plan_ok(record: ShardRecord, cfg: JobConfig) -> bool:
    if record.index >= num_shards(cfg.run.num_samples, cfg.run.shard_size):
        return False
    shard = shard_for(record.index, cfg.run.num_samples, cfg.run.shard_size)
    return (record.start, record.stop) == (shard.start, shard.stop) and record.path == shard_name(record.index, cfg.run.format)


def check_output(fs: Any, root: str, cfg: JobConfig, model: dict[str, Any],
                 sampler_state: dict[str, Any]) -> dict[int, ShardRecord]:
    """The shards a previous run of this same job committed that still verify ({} with run.overwrite);
    refuses another job's output (JobError naming what differs). Reads only: see `begin_output`."""
    url = redact_url(cfg.run.output)
    if cfg.run.overwrite:
        return {}
    existing = read_manifest(fs, root)
    sidecars = load_sidecars(fs, root)
    if existing is None and not sidecars:
        return {}
    if existing is None:
        raise JobError(f"{url} holds shard files but no manifest; choose a new run.output or set run.overwrite=true")
    diff = config_diff(existing.config, manifest_config(cfg))
    for part in ("model", "guide"):
        old, new = (m.get("guide", {}) if part == "guide" else m for m in (existing.model, model))
        if old.get("sha256") != new.get("sha256"):
            diff.append(f"{part} weights (sha256)")
    if not any(d.startswith("sampler.") for d in diff):  # same sampler config, yet another state: another version
        diff += [f"sampler_state.{k}" for k in sorted(set(existing.sampler_state) | set(sampler_state))
                 if existing.sampler_state.get(k) != sampler_state.get(k)]
    if existing.noise_scheme != samplers.NOISE_SCHEME:
        diff.append(f"noise_scheme ({existing.noise_scheme!r} there, {samplers.NOISE_SCHEME!r} here)")
    if diff:
        raise JobError(f"{url} holds a different job ({', '.join(diff)} differ); set run.overwrite=true or choose a new run.output")
    if not cfg.run.resume:
        raise JobError(f"{url} already holds this job and run.resume=false; set run.overwrite=true or choose a new run.output")
    schema, metadata = job_schema(cfg), shard_metadata(cfg, sampler_state, samplers.NOISE_SCHEME)
    done = {}
    for index, record in sidecars.items():
        problems = (verify_shard(fs, root, record, schema=schema, metadata=metadata)
                    if _shard_plan_ok(record, cfg) else ["not in this job's plan"])
        if problems:
            log.warning("regenerating shard %d: %s", index, "; ".join(problems))
        else:
            done[index] = record
    return done


def job_schema(cfg: JobConfig) -> dict[str, Any]:
    """The manifest's schema entry of this job's shards."""
    return shard_schema(cfg.run.format, cfg.run.dtype, cfg.model.shape, cfg.run.labels != "none")


def begin_output(fs: Any, root: str, cfg: JobConfig, manifest: Manifest) -> Manifest:
    """Called once every check passed and the workers are up: create the output, remove temp files of
    crashed writers (and, with run.overwrite, every shard, sidecar and manifest of the previous job),
    and write the `running` manifest. Returns what was written."""
    fs, root = open_output(cfg.run.output, cfg.run.storage_options)
    if cfg.run.overwrite:
        owned = list(list_names(fs, root, "shard-*").values()) + list(list_names(fs, join_path(root, SIDE_DIR), "*").values())
        for path in owned + [join_path(root, MANIFEST_NAME)]:
            if fs.exists(path):
                fs.rm_file(path)
    cleanup_temp(fs, root)
    return write_manifest(fs, root, manifest)


@dataclass
class _Dispatch:
    """State of the ray.wait loop: queued shards, calls in flight, attempts, live actors.

    Slot `a` holds actor `actors[a]`; a replacement bumps `generation[a]`, so a late failure of the
    old actor's calls is told from a failure of its replacement. A shard whose worker died while running
    it goes to `suspects` and runs alone on an idle actor next time: a shard that kills its worker is
    then told apart from the shards that were in flight beside it."""

    actors: list[Any]
    queue: collections.deque[Shard]
    max_in_flight: int
    new_actor: Callable[[], Any]
    in_flight: dict[Any, tuple[Shard, int, int, int]] = field(default_factory=dict)  # ref -> shard, slot, generation, load
    suspects: collections.deque[Shard] = field(default_factory=collections.deque)
    load: collections.Counter[int] = field(default_factory=collections.Counter)
    attempts: collections.Counter[int] = field(default_factory=collections.Counter)
    restarts: collections.Counter[int] = field(default_factory=collections.Counter)
    generation: collections.Counter[int] = field(default_factory=collections.Counter)
    alive: set[int] = field(default_factory=set)

    def fill(self) -> None:
        for a in sorted(self.alive):
            if self.suspects and self.load[a] == 0:
                self.submit(a, self.suspects.popleft(), self.max_in_flight)  # alone: fills the actor's slots
            while self.queue and self.load[a] < self.max_in_flight:
                self.submit(a, self.queue.popleft(), 1)

    def submit(self, a: int, shard: Shard, load: int) -> None:
        self.in_flight[self.actors[a].run.remote(shard)] = (shard, a, self.generation[a], load)
        self.load[a] += load

    def pending(self) -> bool:
        return bool(self.queue or self.suspects or self.in_flight)


def dispatch(actors: list[Any], new_actor: Callable[[], Any], shards: list[Shard], cfg: JobConfig,
             on_done: Callable[[dict[str, Any]], None]) -> list[str]:
    """Run `shards` on `actors` (a dead one is replaced by `new_actor()` up to cluster.max_restarts times);
    returns errors of skipped shards. On failure (a shard out of attempts, non-finite samples with
    run.on_nonfinite=fail) no new shard starts, the calls in flight finish (their shards are kept, via
    `on_done`), and JobError is raised."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    state = _Dispatch(actors, collections.deque(shards), cfg.cluster.max_in_flight, new_actor,
                      alive=set(range(len(actors))))
    skipped: list[str] = []
    try:
        while state.pending():
            state.fill()
            if not state.in_flight:
                raise JobError("every worker died; no shard can run (see the Ray logs of the workers)")
            [ref], _ = ray.wait(list(state.in_flight), num_returns=1)
            shard, a, gen, load = state.in_flight.pop(ref)
            if gen == state.generation[a]:
                state.load[a] -= load
            try:
                result = ray.get(ref)
            except RayTaskError as e:  # the shard's own code raised
                cause = e.cause if isinstance(e.cause, Exception) else e
                if isinstance(cause, NonFiniteSamplesError):
                    if cfg.run.on_nonfinite == "skip":
                        skipped.append(f"shard {shard.index} [{shard.start}, {shard.stop}): {cause}")
                        log.warning("skipping shard %d: %s", shard.index, cause)
                        continue
                    raise JobError(f"shard {shard.index} [{shard.start}, {shard.stop}): {cause} "
                                   "(run.on_nonfinite=fail; set it to skip to write the other shards)") from None
                lines = str(cause).strip().splitlines()
                _retry(state, shard, cfg, f"{type(cause).__name__}: {lines[-1] if lines else ''}")
                continue
            except RayError as e:  # the worker died (killed, crashed, out of memory) or cannot be reached
                _replace_actor(state, a, gen, cfg.cluster.max_restarts)
                _retry(state, shard, cfg, f"worker died ({type(e).__name__})", suspect=True)
                continue
            on_done(result)
    except JobError:
        _drain(state, on_done)
        raise
    finally:  # free the workers' resources now, not when their handles are collected
        for actor in state.actors:
            ray.kill(actor, no_restart=True)
    return skipped


def _drain(state: _Dispatch, on_done: Callable[[dict[str, Any]], None]) -> None:
    """Start nothing new; wait for the calls in flight and keep the shards they finish."""
    import ray

    while state.in_flight:
        [ref], _ = ray.wait(list(state.in_flight), num_returns=1)
        state.in_flight.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError:
            continue
        on_done(result)


def _replace_actor(state: _Dispatch, a: int, gen: int, max_restarts: int) -> None:
    """Replace the actor of slot `a` after a call of generation `gen` failed; a late failure of an actor
    that was already replaced changes nothing (its other calls fail too and are re-queued as they do)."""
    import ray

    if a not in state.alive or gen != state.generation[a]:
        return
    ray.kill(state.actors[a], no_restart=True)  # dead already, or unreachable: make sure it is gone
    if state.restarts[a] >= max_restarts:
        state.alive.discard(a)
        log.warning("worker %d died; cluster.max_restarts=%d reached, continuing without it", a, max_restarts)
        return
    state.restarts[a] += 1
    state.generation[a] += 1
    state.load[a] = 0
    log.warning("worker %d died; starting a replacement (%d of %d)", a, state.restarts[a], max_restarts)
    state.actors[a] = state.new_actor()


def _retry(state: _Dispatch, shard: Shard, cfg: JobConfig, reason: str, suspect: bool = False) -> None:
    """Run `shard` again (next, or as a suspect after the suspects before it), or raise JobError when it is
    out of attempts. Suspects go in turn, so a shard that keeps killing workers cannot starve the others."""
    state.attempts[shard.index] += 1
    if state.attempts[shard.index] >= cfg.cluster.max_shard_attempts:
        raise JobError(f"shard {shard.index} [{shard.start}, {shard.stop}) failed {state.attempts[shard.index]} "
                       f"times (cluster.max_shard_attempts={cfg.cluster.max_shard_attempts}); last: {reason}")
    log.warning("re-queueing shard %d (attempt %d): %s", shard.index, state.attempts[shard.index] + 1, reason)
    if suspect:
        state.suspects.append(shard)
    else:
        state.queue.appendleft(shard)


def start_workers(cfg: JobConfig, sampler_state: dict[str, Any], weights: Any,
                  guide_weights: Any) -> tuple[list[Any], Callable[[], Any]]:
    """num_workers SamplerWorker actors, ready (model built) before sampling starts, and their factory."""
    import ray

    wait_for_resources(cfg.cluster)
    c = cfg.cluster
    # Restarts are the driver's (it replaces a dead actor), so Ray's own are off.
    actor_cls = ray.remote(SamplerWorker).options(
        num_cpus=c.cpus_per_worker, num_gpus=c.gpus_per_worker, max_restarts=0, max_concurrency=2,
        runtime_env={"env_vars": MALLOC_ENV})  # merged with the job's runtime_env
    weight_refs = [ray.put(weights), ray.put(guide_weights)]  # one copy in the object store, shared by all actors
    config = cfg.resolved()

    def new_actor() -> Any:
        return actor_cls.remote(config, sampler_state, weight_refs)

    actors = [new_actor() for _ in range(c.num_workers)]
    try:
        infos = ray.get([a.ready.remote() for a in actors])
    except ray.exceptions.RayActorError as e:  # the constructor raised: its error is the message's last line
        lines = [line for line in (getattr(e, "error_msg", "") or str(e)).splitlines() if line.strip()]
        raise JobError(f"a worker failed to start: {lines[-1].strip() if lines else type(e).__name__}") from None
    log.info("workers ready: %s", infos)
    return actors, new_actor


def shard_stats(cfg: JobConfig, paths: list[str]) -> FeatureStats:
    """Feature statistics of committed shards, read back and featurised by Ray tasks."""
    c, fid = cfg.cluster, cfg.metrics.fid
    return fan_out_stats(cfg.run.output, "output", split(paths, c.num_workers), fid.extractor, fid.extractor_kwargs,
                         cfg.run.storage_options, num_cpus=c.cpus_per_worker, num_gpus=c.gpus_per_worker)


def run_job(cfg: JobConfig, *, progress: str | None = None) -> Manifest:
    """Generate the job's samples; returns the final manifest (status complete), raises JobError otherwise."""
    fs, root = open_output(cfg.run.output, cfg.run.storage_options, create=False)  # checked, not written
    if "memory" in protocols(fs):
        raise JobError(f"run.output={cfg.run.output!r}: memory:// lives in one process and Ray workers cannot share it; "
                       "use a local path or an object store (s3://, gs://)")
    sampler = build_sampler(cfg)
    sampler_state = sampler.save()
    model, weights = model_identity(cfg.model, cfg.run.storage_options)
    guide_weights = None
    if cfg.model.guide is not None:
        model["guide"], guide_weights = model_identity(cfg.model.guide, cfg.run.storage_options)
    if cfg.metrics.fid is not None:  # a missing or malformed reference fails now, not after hours of sampling
        load_reference(reference_url(cfg.metrics.fid.extractor, cfg.metrics.fid.ref))
    done = check_output(fs, root, cfg, model, sampler_state)
    manifest = Manifest(
        status="running", config=manifest_config(cfg), sampler_state=sampler_state, model=model,
        schema=job_schema(cfg), noise_scheme=samplers.NOISE_SCHEME, num_samples=cfg.run.num_samples,
        shards=list(done.values()), format_version=job_version(fs, root, cfg.run.overwrite),
    )
    todo = [s for s in iter_shards(cfg.run.num_samples, cfg.run.shard_size) if s.index not in done]
    bar = Progress(cfg.run.num_samples, sum(r.rows for r in done.values()), progress or cfg.run.progress)

    fid = cfg.metrics.fid
    resumed = [r.path for r in done.values()]  # their feature statistics are recomputed from the files
    stats = FeatureStats()

    def on_done(result: dict[str, Any]) -> None:
        if result["record"] is not None:
            record = ShardRecord(**result["record"])
            done[record.index] = record
        if result["stats"] is not None:
            stats.merge(result["stats"])
        bar.update(result["rows"])

    t0 = time.monotonic()
    started = False  # nothing under the output is written before the job is sure to start
    try:
        skipped = []
        if todo or (fid and resumed):
            with ray_session(cfg.cluster):
                if todo:
                    actors, new_actor = start_workers(cfg, sampler_state, weights, guide_weights)
                manifest, started = begin_output(fs, root, cfg, manifest), True
                if todo:
                    skipped = dispatch(actors, new_actor, todo, cfg, on_done)
                if fid and resumed:
                    stats.merge(shard_stats(cfg, resumed))
        else:
            manifest, started = begin_output(fs, root, cfg, manifest), True
        metrics = {"fid": fid_report(stats, fid.extractor, fid.ref)} if fid is not None and not skipped else {}
    except (Exception, KeyboardInterrupt) as e:
        bar.close()
        if started:
            write_manifest(fs, root, manifest.model_copy(update={
                "status": "failed", "shards": sorted(done.values(), key=lambda r: r.index),
                "error": scrub(str(e) or type(e).__name__, cfg.run.storage_options)}))
        raise
    bar.close()
    if metrics:
        write_report(fs, root, metrics["fid"])
        print(f"seedshard: FID {metrics['fid']['fid']:.4f} ({fid.extractor} features, {stats.n} samples "
              f"vs {metrics['fid']['reference']})", flush=True)
    status = "failed" if skipped else "complete"
    manifest = write_manifest(fs, root, manifest.model_copy(update={
        "status": status, "shards": sorted(done.values(), key=lambda r: r.index),
        "error": ("; ".join(skipped) if skipped else None), "metrics": metrics}))
    if cfg.run.grid and manifest.shards:
        save_grid(cfg.run.output, side_path(cfg.run.output, GRID_NAME, manifest.format_version), n=cfg.run.grid,
                  storage_options=cfg.run.storage_options)
    log.info("%d samples in %.1fs", cfg.run.num_samples, time.monotonic() - t0)
    if skipped:
        raise JobError(f"{len(skipped)} shard(s) skipped (run.on_nonfinite=skip); the rest is written: {skipped[0]}")
    return manifest
