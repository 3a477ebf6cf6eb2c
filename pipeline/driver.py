"""The driver: one job config -> N samples written as shards, with a manifest.

Order of work: validate, resolve the output (refuse a different job there, verify what a
previous run committed), read the weights once, write a `running` manifest, start or join
Ray, start `num_workers` SamplerWorker actors with the sampler state and weights in the
object store, keep `max_in_flight` shards per actor with a plain `ray.wait` loop (a shard of
a dead actor is re-queued, up to `max_shard_attempts`), and write the final manifest last.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import samplers

from . import storage
from .cluster import ClusterError, ray_session, wait_for_resources
from .config import JobConfig, config_diff
from .manifest import MANIFEST_NAME, Manifest, read_manifest, write_manifest
from .model import build_network, read_checkpoint, state_dict_sha256
from .plan import Shard, iter_shards, num_shards, shard_for
from .progress import Progress
from .sampling import NonFiniteSamplesError
from .worker import SamplerWorker

log = logging.getLogger(__name__)


class JobError(RuntimeError):
    """A job that cannot start or could not finish; finished shards are kept."""


def build_sampler(cfg: JobConfig) -> samplers.Sampler:
    """The sampler named by `cfg.sampler` with its method kwargs."""
    s = cfg.sampler
    cls = samplers.sampler_class(s.name)
    if issubclass(cls, samplers.StepSampler):
        kwargs = dict(steps=s.steps, time_dist=s.time_dist, time_kwargs=s.time_kwargs, dtype=s.dtype,
                      guidance_interval=s.guidance_interval)
        return cls(**kwargs, **s.kwargs)
    return cls(**s.kwargs)


def model_identity(model_cfg: Any, storage_options: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """({factory, kwargs, checkpoint, sha256}, state dict or None): what the samples were drawn from."""
    identity = {"factory": model_cfg.factory, "kwargs": model_cfg.kwargs, "checkpoint": model_cfg.checkpoint}
    if model_cfg.checkpoint is not None:
        state, identity["sha256"] = read_checkpoint(model_cfg.checkpoint, storage_options)
        return identity, state
    identity["sha256"] = state_dict_sha256(build_network(model_cfg, "cpu").state_dict())
    return identity, None


def _shard_plan_ok(record: storage.ShardRecord, cfg: JobConfig) -> bool:
    if record.index >= num_shards(cfg.run.num_samples, cfg.run.shard_size):
        return False
    shard = shard_for(record.index, cfg.run.num_samples, cfg.run.shard_size)
    return (record.start, record.stop) == (shard.start, shard.stop) and record.path == storage.shard_name(record.index, cfg.run.format)


def prepare_output(fs: Any, root: str, cfg: JobConfig, model: dict[str, Any]) -> dict[int, storage.ShardRecord]:
    """Shards a previous run of this same job committed and that still verify; refuses another job's output."""
    url = cfg.run.output
    existing = read_manifest(fs, root)
    sidecars = storage.load_sidecars(fs, root)
    if existing is None and not sidecars:
        return {}
    if cfg.run.overwrite:
        names = [storage.sidecar_name(r.path) for r in sidecars.values()] + [r.path for r in sidecars.values()]
        names += [r.path for r in (existing.shards if existing else [])] + [MANIFEST_NAME]
        for name in sorted(set(names)):
            if fs.exists(storage.join_path(root, name)):
                fs.rm_file(storage.join_path(root, name))
        storage.cleanup_temp(fs, root)
        return {}
    if existing is None:
        raise JobError(f"{url} holds shard files but no manifest; choose a new run.output or set run.overwrite=true")
    diff = config_diff(existing.config, cfg.resolved())
    if existing.model.get("sha256") != model.get("sha256"):
        diff.append("model weights (sha256)")
    if diff:
        raise JobError(f"{url} holds a different job ({', '.join(diff)} differ); set run.overwrite=true or choose a new run.output")
    if not cfg.run.resume:
        raise JobError(f"{url} already holds this job and run.resume=false; set run.overwrite=true or choose a new run.output")
    storage.cleanup_temp(fs, root)
    done = {}
    for index, record in sidecars.items():
        problems = storage.verify_shard(fs, root, record) if _shard_plan_ok(record, cfg) else ["not in this job's plan"]
        if problems:
            log.warning("regenerating shard %d: %s", index, "; ".join(problems))
        else:
            done[index] = record
    return done


@dataclass
class _Dispatch:
    """State of the ray.wait loop: queued shards, calls in flight, attempts, live actors."""

    actors: list[Any]
    queue: collections.deque[Shard]
    max_in_flight: int
    new_actor: Callable[[], Any]
    in_flight: dict[Any, tuple[Shard, int]] = field(default_factory=dict)
    load: collections.Counter[int] = field(default_factory=collections.Counter)
    attempts: collections.Counter[int] = field(default_factory=collections.Counter)
    restarts: collections.Counter[int] = field(default_factory=collections.Counter)
    alive: set[int] = field(default_factory=set)

    def fill(self) -> None:
        for a in sorted(self.alive):
            while self.queue and self.load[a] < self.max_in_flight:
                shard = self.queue.popleft()
                self.in_flight[self.actors[a].run.remote(shard)] = (shard, a)
                self.load[a] += 1


def dispatch(actors: list[Any], new_actor: Callable[[], Any], shards: list[Shard], cfg: JobConfig,
             on_done: Callable[[dict[str, Any]], None]) -> list[str]:
    """Run `shards` on `actors` (a dead one is replaced by `new_actor()` up to cluster.max_restarts times);
    returns errors of skipped shards, raises JobError on failure."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    state = _Dispatch(actors, collections.deque(shards), cfg.cluster.max_in_flight, new_actor,
                      alive=set(range(len(actors))))
    skipped: list[str] = []
    while state.queue or state.in_flight:
        state.fill()
        if not state.in_flight:
            raise JobError("every worker died; no shard can run (see the Ray logs of the workers)")
        [ref], _ = ray.wait(list(state.in_flight), num_returns=1)
        shard, a = state.in_flight.pop(ref)
        state.load[a] -= 1
        try:
            result = ray.get(ref)
        except RayActorError as e:
            _replace_actor(state, a, cfg.cluster.max_restarts)
            _retry(state, shard, cfg, f"worker died ({type(e).__name__})")
            continue
        except RayTaskError as e:
            cause = e.cause if isinstance(e.cause, Exception) else e
            if isinstance(cause, NonFiniteSamplesError):
                if cfg.run.on_nonfinite == "skip":
                    skipped.append(f"shard {shard.index}: {cause}")
                    log.warning("skipping shard %d: %s", shard.index, cause)
                    continue
                raise JobError(f"shard {shard.index} [{shard.start}, {shard.stop}): {cause}") from None
            _retry(state, shard, cfg, f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}")
            continue
        on_done(result)
    return skipped


def _replace_actor(state: _Dispatch, a: int, max_restarts: int) -> None:
    """A dead actor's other calls fail too; replace it once (its calls in flight are re-queued as they fail)."""
    import ray

    if a not in state.alive or not _is_dead(state.actors[a]):
        return
    if state.restarts[a] >= max_restarts:
        state.alive.discard(a)
        log.warning("worker %d died; cluster.max_restarts=%d reached, continuing without it", a, max_restarts)
        return
    state.restarts[a] += 1
    log.warning("worker %d died; starting a replacement (%d of %d)", a, state.restarts[a], max_restarts)
    ray.kill(state.actors[a], no_restart=True)
    state.actors[a] = state.new_actor()


def _is_dead(actor: Any) -> bool:
    import ray

    try:
        ray.get(actor.ready.remote(), timeout=30)
        return False
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return True


def _retry(state: _Dispatch, shard: Shard, cfg: JobConfig, reason: str) -> None:
    state.attempts[shard.index] += 1
    if state.attempts[shard.index] >= cfg.cluster.max_shard_attempts:
        raise JobError(f"shard {shard.index} [{shard.start}, {shard.stop}) failed {state.attempts[shard.index]} "
                       f"times (cluster.max_shard_attempts={cfg.cluster.max_shard_attempts}); last: {reason}")
    log.warning("re-queueing shard %d (attempt %d): %s", shard.index, state.attempts[shard.index] + 1, reason)
    state.queue.appendleft(shard)


def start_workers(cfg: JobConfig, sampler_state: dict[str, Any], weights: Any,
                  guide_weights: Any) -> tuple[list[Any], Callable[[], Any]]:
    """num_workers SamplerWorker actors, ready (model built) before sampling starts, and their factory."""
    import ray

    wait_for_resources(cfg.cluster)
    c = cfg.cluster
    # Restarts are the driver's (it replaces a dead actor), so Ray's own are off.
    actor_cls = ray.remote(SamplerWorker).options(
        num_cpus=c.cpus_per_worker, num_gpus=c.gpus_per_worker, max_restarts=0, max_concurrency=2)
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


def run_job(cfg: JobConfig, *, progress: str | None = None) -> Manifest:
    """Generate the job's samples; returns the final manifest (status complete), raises JobError otherwise."""
    fs, root = storage.open_output(cfg.run.output, cfg.run.storage_options)
    if "memory" in ((fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol):
        raise JobError(f"run.output={cfg.run.output!r}: memory:// lives in one process and Ray workers cannot share it; "
                       "use a local path or an object store (s3://, gs://)")
    sampler = build_sampler(cfg)
    sampler_state = sampler.save()
    model, weights = model_identity(cfg.model, cfg.run.storage_options)
    guide_weights = None
    if cfg.model.guide is not None:
        model["guide"], guide_weights = model_identity(cfg.model.guide, cfg.run.storage_options)
    done = prepare_output(fs, root, cfg, model)
    manifest = Manifest(
        status="running", config=cfg.resolved(), sampler_state=sampler_state, model=model,
        schema=storage.shard_schema(cfg.run.format, cfg.run.dtype, cfg.model.shape, cfg.run.labels != "none"),
        noise_scheme=samplers.NOISE_SCHEME, num_samples=cfg.run.num_samples, shards=list(done.values()),
    )
    manifest = write_manifest(fs, root, manifest)
    todo = [s for s in iter_shards(cfg.run.num_samples, cfg.run.shard_size) if s.index not in done]
    bar = Progress(cfg.run.num_samples, sum(r.rows for r in done.values()), progress or cfg.run.progress)

    def on_done(result: dict[str, Any]) -> None:
        record = storage.ShardRecord(**result["record"])
        done[record.index] = record
        bar.update(record.rows)

    t0 = time.monotonic()
    try:
        if todo:
            with ray_session(cfg.cluster):
                actors, new_actor = start_workers(cfg, sampler_state, weights, guide_weights)
                skipped = dispatch(actors, new_actor, todo, cfg, on_done)
        else:
            skipped = []
    except (JobError, ClusterError, KeyboardInterrupt) as e:
        bar.close()
        write_manifest(fs, root, manifest.model_copy(update={
            "status": "failed", "shards": sorted(done.values(), key=lambda r: r.index), "error": str(e) or type(e).__name__}))
        raise
    bar.close()
    status = "failed" if skipped else "complete"
    manifest = write_manifest(fs, root, manifest.model_copy(update={
        "status": status, "shards": sorted(done.values(), key=lambda r: r.index),
        "error": ("; ".join(skipped) if skipped else None)}))
    log.info("%d samples in %.1fs", cfg.run.num_samples, time.monotonic() - t0)
    if skipped:
        raise JobError(f"{len(skipped)} shard(s) skipped (run.on_nonfinite=skip); the rest is written: {skipped[0]}")
    return manifest
