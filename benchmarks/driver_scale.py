"""Driver at scale, simulated: the real `run_job` / `dispatch` loop over 10^3 .. 10^5 shards with null workers.

The workers are `benchmarks.null_worker.NullWorker` actors (fractional CPUs, no torch, no
compute, no write; `run` returns what SamplerWorker.run returns), put in place of
`pipeline.run.driver.start_workers`; everything else is the real driver: plan, output check,
manifests (the final one lists every shard), `dispatch` with `max_in_flight` shards per actor,
`on_done`, progress. Each size runs in a fresh driver process (its own local Ray), and reports:

  * driver CPU per shard: `time.process_time()` of the driver process (all its threads, Ray's
    included) during `dispatch`, and during the whole `run_job`;
  * driver memory growth: peak RSS during `run_job` (sampled every 10 ms) minus RSS before it,
    and the peak of Python allocations (`tracemalloc`, in a second run: it slows Python down).

    python benchmarks/driver_scale.py            # 10^3, 10^4, 10^5 shards (+ 10^4 shards of 10 samples)
    python benchmarks/driver_scale.py --quick    # smoke run: 300 shards, both runs in one driver process
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FULL = [(1_000, 1_000), (10_000, 1_000), (100_000, 1_000), (10_000, 10)]  # (shards, shard_size)
QUICK = [(300, 100)]  # one size, its plain and tracemalloc runs in one driver process (one Ray start)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS(threading.Thread):
    """Samples this process's RSS every `period_s` until stopped; `.peak` in bytes."""

    def __init__(self, period_s: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.period_s, self.peak, self.done = period_s, _rss(), threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.period_s):
            self.peak = max(self.peak, _rss())

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak, _rss())


def child(shards: int, shard_size: int, actors: int, in_flight: int, sleep_s: float,
          runs: Sequence[str]) -> list[dict[str, Any]]:
    """One driver process: start Ray and the null actors, run the job once per run ("plain", or "trace" under
    tracemalloc) into a fresh output, return the measurements of each run."""
    import ray

    from benchmarks.null_worker import NullWorker

    temp_dir = tempfile.mkdtemp(prefix="ssds-", dir="/tmp")
    out_root = tempfile.mkdtemp(prefix="ssds-out-")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False,
             configure_logging=False)
    try:
        cls = ray.remote(NullWorker).options(num_cpus=0.05, max_restarts=0, max_concurrency=2)
        t0 = time.perf_counter()
        pool = [cls.remote(sleep_s) for _ in range(actors)]
        infos = ray.get([a.ready.remote() for a in pool])
        actor_start = time.perf_counter() - t0
        assert not any(i["torch"] for i in infos), "null workers imported torch"
        return [_job(shards, shard_size, actors, in_flight, sleep_s, run == "trace", pool, cls,
                     os.path.join(out_root, f"{k}-{run}")) | {"actor_start": actor_start} for k, run in enumerate(runs)]
    finally:
        ray.shutdown()
        shutil.rmtree(out_root, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _job(shards: int, shard_size: int, actors: int, in_flight: int, sleep_s: float, trace: bool, pool: list[Any],
         cls: Any, out_dir: str) -> dict[str, Any]:
    """One run_job over the null actors in `pool` (`trace`: under tracemalloc); its measurements."""
    from pipeline.run import driver
    from pipeline.config import validate_config

    cfg = validate_config({
        "run": {"num_samples": shards * shard_size, "seed": 0, "shard_size": shard_size, "batch_size": shard_size,
                "output": out_dir, "progress": "log"},
        "model": {"factory": "pipeline.models.gaussian:build_gaussian", "interface": "flow", "shape": [1]},
        "sampler": {"name": "euler", "steps": 1},
        "cluster": {"num_workers": actors, "cpus_per_worker": 0.05, "max_in_flight": in_flight},
    })
    timings: dict[str, float] = {}
    dispatch = driver.dispatch

    def start_workers(*args: Any) -> tuple[list[Any], Any]:
        return list(pool), lambda: cls.remote(sleep_s)

    def timed_dispatch(*args: Any) -> Any:
        t, c = time.perf_counter(), time.process_time()
        try:
            return dispatch(*args)
        finally:
            timings["dispatch_wall"] = time.perf_counter() - t
            timings["dispatch_cpu"] = time.process_time() - c

    real_start, driver.start_workers, driver.dispatch = driver.start_workers, start_workers, timed_dispatch
    real_missing, driver.missing_shards = driver.missing_shards, lambda *args: {}  # null workers write no files
    try:
        if trace:
            import tracemalloc

            tracemalloc.start()
        rss0, peak = _rss(), _PeakRSS()
        peak.start()
        t, c = time.perf_counter(), time.process_time()
        manifest = driver.run_job(cfg)
        timings["job_wall"], timings["job_cpu"] = time.perf_counter() - t, time.process_time() - c
        timings["rss_growth"] = peak.stop() - rss0
        if trace:
            timings["py_peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    finally:
        driver.start_workers, driver.dispatch, driver.missing_shards = real_start, dispatch, real_missing
    assert manifest.status == "complete" and len(manifest.shards) == shards, manifest.status
    timings["manifest_bytes"] = os.path.getsize(os.path.join(out_dir, "__seedshard__", "manifest.json"))
    return timings


def run_child(shards: int, shard_size: int, args: argparse.Namespace, runs: Sequence[str]) -> list[dict[str, Any]]:
    """The measurements of each run ("plain" / "trace") from one fresh driver process."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(shards), str(shard_size), "--actors",
           str(args.actors), "--max-in-flight", str(args.max_in_flight), "--sleep", str(args.sleep), "--runs", *runs]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="one small size, 4 actors, the tracemalloc run in the same driver process (a smoke run)")
    p.add_argument("--actors", type=int, default=32)
    p.add_argument("--max-in-flight", type=int, default=2, help="cluster.max_in_flight (shards per actor)")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds each null run() sleeps")
    p.add_argument("--no-trace", action="store_true", help="skip the tracemalloc runs")
    p.add_argument("--child", nargs=2, type=int, metavar=("SHARDS", "SHARD_SIZE"), help=argparse.SUPPRESS)
    p.add_argument("--runs", nargs="+", choices=["plain", "trace"], default=["plain"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        result = child(*args.child, args.actors, args.max_in_flight, args.sleep, args.runs)
        print(json.dumps(result))
        return
    if args.quick:
        args.actors = min(args.actors, 4)
    sizes = QUICK if args.quick else FULL
    runs = ["plain"] if args.no_trace else ["plain", "trace"]
    rows = []
    for shards, shard_size in sizes:
        if args.quick:  # one Ray start for both runs
            results = run_child(shards, shard_size, args, runs)
        else:  # each run in a fresh driver process, so the memory it grows is its own
            results = [run_child(shards, shard_size, args, [run])[0] for run in runs]
        r = results[0]
        if len(results) > 1:
            r["py_peak"] = results[1]["py_peak"]
        rows.append((shards, shard_size, r))

    print(f"{args.actors} null actors (num_cpus=0.05, sleep {args.sleep:g} s), max_in_flight={args.max_in_flight}, "
          f"{os.cpu_count()} cores\n")
    print("| shards | samples | dispatch wall s | shards/s | driver CPU ms/shard (dispatch) "
          "| driver CPU ms/shard (run_job) | peak RSS growth MB | peak Python heap MB | manifest MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shards, shard_size, r in rows:
        py = f"{r['py_peak'] / 2**20:.1f}" if "py_peak" in r else "-"
        print(f"| {shards:,} | {shards * shard_size:,} | {r['dispatch_wall']:.1f} | {shards / r['dispatch_wall']:.0f} "
              f"| {1e3 * r['dispatch_cpu'] / shards:.3f} | {1e3 * r['job_cpu'] / shards:.3f} "
              f"| {r['rss_growth'] / 2**20:.1f} | {py} | {r['manifest_bytes'] / 2**20:.1f} |")
    print(f"\nactor start ({args.actors} actors): {rows[0][2]['actor_start']:.1f} s")


if __name__ == "__main__":
    main()
