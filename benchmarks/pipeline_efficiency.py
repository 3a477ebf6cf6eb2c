"""Pipeline efficiency: a full seedshard job vs the bare in-process loop, same sampler, model and batch size.

Arms (1 round = one run of each; medians over rounds, ratios are medians of per-round ratios):
  * bare: `sampler.sample(...)` per batch in a Python loop, nothing written, in a fresh process set
    up like an actor (1 torch thread, the actors' glibc malloc settings `pipeline.run.worker.MALLOC_ENV`;
    `--naive-bare` leaves glibc's defaults, which cost a CPU loop 10-30 % in page faults); the
    sampler and fields are built before the clock starts.
  * job:  `pipeline.run.driver.run_job` with `num_workers` SamplerWorker actors of 1 CPU each
    (Ray actors, Parquet encode + sha256 + atomic commit of every shard, manifest) on a Ray
    started once beforehand; its start time is reported separately, and so is `start_workers`
    (actor processes, model build, weights through the object store).
With `--workers 2`, the bare arm is two processes of 1 thread each splitting the shards. Bare
processes run at the actors' nice value (Ray starts workers at nice 15).

Two ways to put the arms side by side (`--modes`):
  * concurrent: the bare loop runs in its own process(es), looping over the job's batches, while
    the job runs; its rate counts the batches done while the job runs (its start_workers call
    excluded, as from the job's time). Both arms then see the same load from elsewhere at the same time (each gets one of
    the cores), which on a shared machine is far steadier than taking turns.
  * alternate: one after the other in ABBA order; also gives "best" (ratio of the fastest runs:
    interference only ever adds time), "e2e" (actor start included) and "CPU" (CPU seconds of the
    bare process(es) vs the actors while dispatching plus the driver process for the whole job).
Ratios compare samples/s (> 1: the job is faster). "job" excludes the one-time Ray start and
the actor start (fixed costs, in their own columns). "prep + final s" is the driver's time
outside start_workers and dispatch (model identity, output check, manifests).

    python benchmarks/pipeline_efficiency.py            # full run (a few minutes)
    python benchmarks/pipeline_efficiency.py --quick    # smoke run: tiny sizes, each model and each mode once
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

from pipeline.run import driver  # noqa: E402
from pipeline.config import JobConfig, validate_config  # noqa: E402
from pipeline.network import build_fields, model_identity  # noqa: E402
from pipeline.run.plan import iter_shards, shard_batches  # noqa: E402
from pipeline.run.sampling import SampleSpec, labels_for  # noqa: E402
from pipeline.run.worker import MALLOC_ENV  # noqa: E402

# model key -> (model section, sampler section, (num_samples, shard_size, batch_size) full, quick)
MODELS: dict[str, tuple[dict[str, Any], dict[str, Any], tuple[int, int, int], tuple[int, int, int]]] = {
    "demo": (
        {"factory": "pipeline.models.digits:build_demo", "interface": "flow", "shape": [1, 8, 8], "num_classes": 10},
        {"name": "heun", "steps": 16, "guidance_scale": 2.0},
        (2000, 250, 125), (100, 50, 50),
    ),
    "unet": (
        {"factory": "benchmarks.nets:build_unet", "kwargs": {"size": "small"}, "interface": "edm",
         "interface_kwargs": {"precond": True}, "shape": [3, 32, 32]},
        {"name": "heun", "steps": 4, "time_dist": "karras"},
        (256, 64, 32), (32, 16, 16),
    ),
}
QUICK_UNET = {"size": "tiny"}
RAY_WORKER_NICENESS = 15  # Ray starts its worker processes (our actors) at this nice value (RAY_worker_niceness)


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
    torch.set_num_threads(1)  # as SamplerWorker.__init__ with cpus_per_worker=1
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
    os.nice(RAY_WORKER_NICENESS)  # the actors' priority, so the arms compete for the cores on equal terms
    cfg = validate_config(cfg_json)
    setup = _bare_setup(cfg)
    barrier.wait()
    out.put(_bare_loop(cfg, setup, part, parts))


def bare(cfg: JobConfig, workers: int) -> tuple[float, float]:
    """(wall s, CPU s) of the bare loop in `workers` fresh processes (like the actors: the same work runs a few
    per cent faster or slower from one process to the next, so neither arm runs in this long-lived one)."""
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


def _bare_background(cfg_json: dict[str, Any], ready: Any, stop: Any, out: Any) -> None:
    """Loop over the job's batches until `stop` is set; put [(t_start, t_end, rows)] of every batch."""
    os.nice(RAY_WORKER_NICENESS)  # the actors' priority, so the arms compete for the cores on equal terms
    cfg = validate_config(cfg_json)
    sampler, net, g_net, spec = _bare_setup(cfg)
    batches = [b for s in iter_shards(cfg.run.num_samples, cfg.run.shard_size) for b in shard_batches(s, cfg.run.batch_size)]
    log = []
    ready.set()
    with torch.inference_mode():
        while not stop.is_set():
            for start, end in batches:
                t = time.perf_counter()
                sampler.sample(end - start, "cpu", net=net, shape=spec.shape, seed=spec.seed, start_index=start,
                               labels=labels_for(spec, start, end), g_net=g_net, guidance_scale=spec.guidance_scale)
                log.append((t, time.perf_counter(), end - start))
                if stop.is_set():
                    break
    out.put(log)


def concurrent_round(cfg: JobConfig, workers: int) -> tuple[float, float, dict[str, float]]:
    """(bare samples/s, job samples/s, job timings) with `workers` bare processes sampling while the job runs:
    both arms see the same load from elsewhere. The bare rate counts the batches done inside the job's
    window (from its workers being ready to its end); perf_counter is CLOCK_MONOTONIC, shared by processes."""
    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    readies = [ctx.Event() for _ in range(workers)]
    procs = [ctx.Process(target=_bare_background, args=(cfg.resolved(), r, stop, out)) for r in readies]
    for p in procs:
        p.start()
    try:
        while not all(r.is_set() for r in readies):
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError(f"a bare process failed (exit codes {[p.exitcode for p in procs]})")
            time.sleep(0.05)
        timings = job(cfg)
    finally:
        stop.set()
    logs = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    windows = [(timings["t_begin"], timings["t_start"]), (timings["t_ready"], timings["t_end"])]
    bare_rate = 0.0
    for log in logs:
        inside = [(a, b, n) for a, b, n in log if any(w0 <= a and b <= w1 for w0, w1 in windows)]
        bare_rate += sum(n for _, _, n in inside) / sum(b - a for a, b, _ in inside) if inside else float("nan")
    return bare_rate, cfg.run.num_samples / (timings["total"] - timings["start"]), timings


def job(cfg: JobConfig) -> dict[str, float]:
    """Seconds of run_job (Ray already up), of its start_workers call, CPU seconds (actors while
    dispatching + driver), and the actors' write seconds."""
    import ray  # first: it brings its own psutil
    import psutil

    timings: dict[str, float] = {"start": 0.0, "write": 0.0, "sample": 0.0, "cpu": 0.0, "dispatch": 0.0}
    start_workers, dispatch = driver.start_workers, driver.dispatch

    def timed_start(*args: Any) -> Any:
        t = timings["t_start"] = time.perf_counter()
        try:
            return start_workers(*args)
        finally:
            timings["t_ready"] = time.perf_counter()
            timings["start"] += timings["t_ready"] - t

    def counted_dispatch(actors: Any, new_actor: Any, shards: Any, cfg: Any, on_done: Any) -> Any:
        def on_done_counted(result: Any) -> None:
            timings["write"] += result.write_s
            timings["sample"] += result.sample_s
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
        timings["t_begin"] = t0
        manifest = driver.run_job(cfg, progress="none")
        timings["t_end"] = time.perf_counter()
        timings["total"] = timings["t_end"] - t0
        timings["cpu"] += time.process_time() - c0
    finally:
        driver.start_workers, driver.dispatch = start_workers, dispatch
    assert manifest.status == "complete" and sum(s.rows for s in manifest.shards) == cfg.run.num_samples
    return timings


def alternate(cfg: JobConfig, workers: int, rounds: int) -> dict[str, Any]:
    """Bare and job one after the other, in ABBA order so drifting load hits both arms alike."""
    bare_t, job_t = [], []
    for r in range(rounds):
        if r % 2 == 0:
            bare_t.append(bare(cfg, workers))
            job_t.append(job(cfg))
        else:
            job_t.append(job(cfg))
            bare_t.append(bare(cfg, workers))
    n = cfg.run.num_samples
    pairs = list(zip(bare_t, job_t))  # rounds: adjacent bare and job runs
    ratios = [bt[0] / (jt["total"] - jt["start"]) for bt, jt in pairs]
    return {
        "bare": n / statistics.median(t[0] for t in bare_t),
        "job": n / statistics.median(t["total"] - t["start"] for t in job_t),
        "ratio": statistics.median(ratios), "lo": min(ratios), "hi": max(ratios),
        "best": min(t[0] for t in bare_t) / min(t["total"] - t["start"] for t in job_t),
        "e2e": statistics.median(bt[0] / jt["total"] for bt, jt in pairs),
        "cpu": statistics.median(bt[1] / jt["cpu"] for bt, jt in pairs),
        **_job_columns(job_t),
    }


def concurrent(cfg: JobConfig, workers: int, rounds: int) -> dict[str, Any]:
    """Bare processes sampling while the job runs, `rounds` times."""
    results = [concurrent_round(cfg, workers) for _ in range(rounds)]
    ratios = [j / b for b, j, _ in results]
    return {
        "bare": statistics.median(b for b, _, _ in results), "job": statistics.median(j for _, j, _ in results),
        "ratio": statistics.median(ratios), "lo": min(ratios), "hi": max(ratios),
        **_job_columns([t for _, _, t in results]),
    }


def _job_columns(job_t: list[dict[str, float]]) -> dict[str, float]:
    return {
        "start": statistics.median(t["start"] for t in job_t),
        "fixed": statistics.median(t["total"] - t["start"] - t["dispatch"] for t in job_t),
        "write": statistics.median(t["write"] for t in job_t),
        "sample": statistics.median(t["sample"] for t in job_t),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, 1 round, each model and each mode once, the first --workers (a smoke run)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--workers", nargs="+", type=int, default=[1], help="actors (and bare processes) to compare")
    p.add_argument("--modes", nargs="+", default=["concurrent", "alternate"], choices=["concurrent", "alternate"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--naive-bare", action="store_true",
                   help="bare processes keep glibc's default malloc settings (the actors get pipeline.run.worker.MALLOC_ENV)")
    args = p.parse_args(argv)
    if not args.naive_bare:
        os.environ.update(MALLOC_ENV)  # the actors' malloc settings, for the spawned bare processes
    rounds = 1 if args.quick else args.rounds
    modes = {"concurrent": concurrent, "alternate": alternate}

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.pop("RAY_ADDRESS", None)
    temp_dir = tempfile.mkdtemp(prefix="sspe-", dir="/tmp")
    out_dir = tempfile.mkdtemp(prefix="sspe-out-")
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=max(args.workers), include_dashboard=False, _temp_dir=temp_dir,
             log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - t0
    cases = [(model, workers, mode) for model in args.models for workers in args.workers for mode in args.modes]
    if args.quick:  # every code path once: model i with mode i (cycling the shorter list)
        n = max(len(args.models), len(args.modes))
        cases = [(args.models[i % len(args.models)], args.workers[0], args.modes[i % len(args.modes)]) for i in range(n)]
    rows = []
    try:
        for model, workers, mode in cases:
            cfg = job_config(model, os.path.join(out_dir, f"{model}-{workers}"), workers, args.quick)
            model_identity(cfg.model, {})  # imports the model's modules once, like the Ray start
            rows.append({"model": model, "workers": workers, "mode": mode, "n": cfg.run.num_samples,
                         "shard": cfg.run.shard_size, "batch": cfg.run.batch_size,
                         **modes[mode](cfg, workers, rounds)})
    finally:
        ray.shutdown()
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)

    print(f"Ray start (once): {ray_start:.2f} s; {rounds} round(s) per row (medians); torch {torch.__version__}, "
          f"{os.cpu_count()} cores\n")
    print("| model | workers | mode | samples | shard / batch | bare samples/s | job samples/s "
          "| job / bare (median [range]) | job / bare (best) | e2e / bare | CPU bare / job | actor start s "
          "| prep + final s | sample s (in actors) | write s (in actors) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        extra = (f"{r['best']:.3f} | {r['e2e']:.3f} | {r['cpu']:.3f}" if r["mode"] == "alternate" else "- | - | -")
        print(f"| {r['model']} | {r['workers']} | {r['mode']} | {r['n']} | {r['shard']} / {r['batch']} | {r['bare']:.1f} "
              f"| {r['job']:.1f} | {r['ratio']:.3f} [{r['lo']:.2f}, {r['hi']:.2f}] | {extra} | {r['start']:.2f} "
              f"| {r['fixed']:.2f} | {r['sample']:.2f} | {r['write']:.2f} |")


if __name__ == "__main__":
    main()
