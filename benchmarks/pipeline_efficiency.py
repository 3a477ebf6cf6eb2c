"""Pipeline efficiency: a full seedshard job vs the bare in-process loop, same sampler, model and batch size.

Arms, run alternately (ABBA) for `--repeats` rounds in one process; medians reported, ratios are
medians of the per-round ratios:
  * bare: `sampler.sample(...)` per batch in a Python loop, 1 torch thread, nothing written;
    the sampler and fields are built before the clock starts.
  * job:  `pipeline.driver.run_job` with `num_workers` SamplerWorker actors of 1 CPU each
    (Ray actors, Parquet encode + sha256 + atomic commit of every shard, manifest) on a Ray
    started once beforehand; its start time is reported separately, and so is `start_workers`
    (actor processes, model build, weights through the object store).
With `--workers 2`, the bare arm is two processes of 1 thread each splitting the shards.

Ratios compare samples/s (> 1: the job is faster). "job" excludes the one-time Ray start and
the actor start (fixed costs of a job, reported in their own columns); "e2e" includes the actor
start. On a shared machine single runs scatter by 10-20 %, so the table gives the median of the
per-round ratios with their range, and the ratio of the best runs (interference only ever adds
time). "CPU" compares CPU seconds: the bare process(es) vs the actors while dispatching plus the
driver process for the whole job. "prep + final s" is the driver's time outside start_workers
and dispatch (model identity, output check, manifests).

    python benchmarks/pipeline_efficiency.py            # full run (a few minutes)
    python benchmarks/pipeline_efficiency.py --quick    # smoke run, < 60 s
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from pipeline import driver  # noqa: E402
from pipeline.config import JobConfig, validate_config  # noqa: E402
from pipeline.model import build_fields  # noqa: E402
from pipeline.plan import iter_shards, shard_batches  # noqa: E402
from pipeline.sampling import SampleSpec, labels_for  # noqa: E402

# model key -> (model section, sampler section, (num_samples, shard_size, batch_size) full, quick)
MODELS: dict[str, tuple[dict[str, Any], dict[str, Any], tuple[int, int, int], tuple[int, int, int]]] = {
    "demo": (
        {"factory": "pipeline.models.digits:build_demo", "interface": "flow", "shape": [1, 8, 8], "num_classes": 10},
        {"name": "heun", "steps": 16, "guidance_scale": 2.0},
        (2000, 250, 125), (500, 125, 125),
    ),
    "unet": (
        {"factory": "benchmarks.nets:build_unet", "kwargs": {"size": "small"}, "interface": "edm",
         "interface_kwargs": {"precond": True}, "shape": [3, 32, 32]},
        {"name": "heun", "steps": 4, "time_dist": "karras"},
        (256, 64, 32), (32, 16, 16),
    ),
}
QUICK_UNET = {"size": "tiny"}


def job_config(model: str, output: str, workers: int, quick: bool) -> JobConfig:
    model_cfg, sampler_cfg, full, small = MODELS[model]
    n, shard, batch = small if quick else full
    model_cfg = dict(model_cfg)
    if quick and model == "unet":
        model_cfg["kwargs"] = QUICK_UNET
    labels = "balanced" if model_cfg.get("num_classes") else "none"
    return validate_config({
        "run": {"num_samples": n, "seed": 0, "shard_size": shard, "batch_size": batch, "output": output,
                "labels": labels, "overwrite": True, "progress": "none"},
        "model": model_cfg, "sampler": sampler_cfg,
        "cluster": {"num_workers": workers, "cpus_per_worker": 1},
    })


def _bare_setup(cfg: JobConfig) -> tuple[Any, Any, Any, SampleSpec]:
    torch.set_num_threads(1)
    sampler = driver.build_sampler(cfg)
    net, g_net = build_fields(cfg.model, cfg.sampler.guidance_scale, "cpu")
    return sampler, net, g_net, SampleSpec.from_config(cfg)


@torch.inference_mode()
def _bare_loop(cfg: JobConfig, setup: tuple[Any, Any, Any, SampleSpec], part: int = 0,
               parts: int = 1) -> tuple[float, float]:
    """(wall s, CPU s) to sample every batch of shards part, part + parts, ... with the bare sampler call."""
    sampler, net, g_net, spec = setup
    t0, c0 = time.perf_counter(), time.process_time()
    for shard in iter_shards(cfg.run.num_samples, cfg.run.shard_size):
        if shard.index % parts != part:
            continue
        for start, stop in shard_batches(shard, cfg.run.batch_size):
            sampler.sample(stop - start, "cpu", net=net, shape=spec.shape, seed=spec.seed, start_index=start,
                           labels=labels_for(spec, start, stop), g_net=g_net, guidance_scale=spec.guidance_scale)
    return time.perf_counter() - t0, time.process_time() - c0


def _bare_process(cfg_json: dict[str, Any], part: int, parts: int, barrier: Any, out: Any) -> None:
    cfg = validate_config(cfg_json)
    setup = _bare_setup(cfg)
    barrier.wait()
    out.put(_bare_loop(cfg, setup, part, parts))


def bare(cfg: JobConfig, workers: int) -> tuple[float, float]:
    """(wall s, CPU s) of the bare loop: in this process (1 worker) or `workers` spawned processes."""
    if workers == 1:
        return _bare_loop(cfg, _bare_setup(cfg))
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_bare_process, args=(cfg.resolved(), k, workers, barrier, out)) for k in range(workers)]
    for p in procs:
        p.start()
    times = []
    while len(times) < workers:
        try:
            times.append(out.get(timeout=1.0))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError(f"a bare process failed (exit codes {[p.exitcode for p in procs]})") from None
    for p in procs:
        p.join()
    return max(t[0] for t in times), sum(t[1] for t in times)


def job(cfg: JobConfig) -> dict[str, float]:
    """Seconds of run_job (Ray already up), of its start_workers call, CPU seconds (actors while
    dispatching + driver), and the actors' write seconds."""
    import ray  # first: it brings its own psutil
    import psutil

    timings: dict[str, float] = {"start": 0.0, "write": 0.0, "cpu": 0.0, "dispatch": 0.0}
    start_workers, dispatch = driver.start_workers, driver.dispatch

    def timed_start(*args: Any) -> Any:
        t = time.perf_counter()
        try:
            return start_workers(*args)
        finally:
            timings["start"] += time.perf_counter() - t

    def counted_dispatch(actors: Any, new_actor: Any, shards: Any, cfg: Any, on_done: Any) -> Any:
        def on_done_counted(result: dict[str, Any]) -> None:
            timings["write"] += result["write_s"]
            on_done(result)

        procs = [psutil.Process(info["pid"]) for info in ray.get([a.ready.remote() for a in actors])]
        cpu0, t = [sum(p.cpu_times()[:2]) for p in procs], time.perf_counter()
        try:
            return dispatch(actors, new_actor, shards, cfg, on_done_counted)
        finally:
            timings["dispatch"] += time.perf_counter() - t
            timings["cpu"] += sum(sum(p.cpu_times()[:2]) - c for p, c in zip(procs, cpu0))

    driver.start_workers, driver.dispatch = timed_start, counted_dispatch
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        manifest = driver.run_job(cfg, progress="none")
        timings["total"] = time.perf_counter() - t0
        timings["cpu"] += time.process_time() - c0
    finally:
        driver.start_workers, driver.dispatch = start_workers, dispatch
    assert manifest.status == "complete" and sum(s.rows for s in manifest.shards) == cfg.run.num_samples
    return timings


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat (a smoke run)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--workers", nargs="+", type=int, default=[1], help="actors (and bare processes) to compare")
    p.add_argument("--repeats", type=int, default=7, help="rounds (bare + job each)")
    args = p.parse_args(argv)
    repeats = 1 if args.quick else args.repeats

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.pop("RAY_ADDRESS", None)
    temp_dir = tempfile.mkdtemp(prefix="sspe-", dir="/tmp")
    out_dir = tempfile.mkdtemp(prefix="sspe-out-")
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=max(args.workers), include_dashboard=False, _temp_dir=temp_dir,
             log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - t0
    rows = []
    try:
        for model in args.models:
            for workers in args.workers:
                cfg = job_config(model, os.path.join(out_dir, f"{model}-{workers}"), workers, args.quick)
                bare_t, job_t = [], []
                for r in range(repeats):  # rounds in ABBA order, so drifting load hits both arms alike
                    if r % 2 == 0:
                        bare_t.append(bare(cfg, workers))
                        job_t.append(job(cfg))
                    else:
                        job_t.append(job(cfg))
                        bare_t.append(bare(cfg, workers))
                n = cfg.run.num_samples
                pairs = list(zip(bare_t, job_t))  # rounds: adjacent bare and job runs
                ratios = [bt[0] / (jt["total"] - jt["start"]) for bt, jt in pairs]
                best_bare = min(t[0] for t in bare_t)
                rows.append({
                    "model": model, "workers": workers, "n": n, "shard": cfg.run.shard_size, "batch": cfg.run.batch_size,
                    "bare": n / statistics.median(t[0] for t in bare_t),
                    "job": n / statistics.median(t["total"] - t["start"] for t in job_t),
                    "ratio": statistics.median(ratios), "lo": min(ratios), "hi": max(ratios),
                    "best": best_bare / min(t["total"] - t["start"] for t in job_t),
                    "e2e": statistics.median(bt[0] / jt["total"] for bt, jt in pairs),
                    "cpu": statistics.median(bt[1] / jt["cpu"] for bt, jt in pairs),
                    "start": statistics.median(t["start"] for t in job_t),
                    "fixed": statistics.median(t["total"] - t["start"] - t["dispatch"] for t in job_t),
                    "write": statistics.median(t["write"] for t in job_t),
                })
    finally:
        ray.shutdown()
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)

    print(f"Ray start (once): {ray_start:.2f} s; repeats: {repeats} (medians); torch {torch.__version__}, "
          f"{os.cpu_count()} cores\n")
    print("| model | workers | samples | shard / batch | bare samples/s | job samples/s | job / bare (median [range]) "
          "| job / bare (best) | e2e / bare | CPU bare / job | actor start s | prep + final s | write s (in actors) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['workers']} | {r['n']} | {r['shard']} / {r['batch']} | {r['bare']:.1f} | {r['job']:.1f} "
              f"| {r['ratio']:.3f} [{r['lo']:.2f}, {r['hi']:.2f}] | {r['best']:.3f} | {r['e2e']:.3f} | {r['cpu']:.3f} "
              f"| {r['start']:.2f} | {r['fixed']:.2f} | {r['write']:.2f} |")

if __name__ == "__main__":
    main()
