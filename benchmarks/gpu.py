"""GPU throughput: the bare loop vs the seedshard job for an EDM-sized U-Net, per dtype, compile and actor count.

On a CUDA machine: `benchmarks.nets:build_unet(size="edm")` (about 52 M parameters, EDM's
CIFAR-10 DDPM++ layout, random weights) on 3x32x32, `edm` interface with preconditioning,
Heun on the Karras grid (18 steps = 35 network calls), batch 256. For every combination of
`model.dtype` (float32 / bfloat16 / float16) and `model.compile` (off / on):
  * bare: `sampler.sample(...)` per batch on the GPU in this process (no copy to the host,
    nothing written); the first batch (warm-up, compilation) is timed apart, so the table
    shows the steady rate and the rate including it;
  * job:  `run_job` with k actors sharing the GPU (`cluster.gpus_per_worker = 1/k`), Parquet
    shards, manifest; Ray started once (its start reported apart), actor start excluded.
The job's rate includes the actors' own warm-up and compilation, so compare it with the bare
"incl. warm-up" rate; for long jobs it approaches the steady one.
Noise: one batch of EDM's stochastic sampler (S_churn=40, one draw per step, noise scheme v2 drawn on the
device) against the same draws made alone, in float32; issue 19's target is noise < 2% of the step time.

Without CUDA it runs the same code on the CPU with small sizes (a tiny U-Net, float32 / bfloat16, no
compile; `--quick`: bfloat16 only, 1 actor), so the script is tested for not rotting.

    python benchmarks/gpu.py                         # CUDA: all dtypes, compile off/on, 1 and 2 actors
    python benchmarks/gpu.py --actors 1 2 4 --num-samples 8192
    python benchmarks/gpu.py --quick                 # smoke run (CPU: < 60 s)
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.pipeline_efficiency import job as timed_job  # noqa: E402
from pipeline.run import driver  # noqa: E402
from pipeline.config import JobConfig, validate_config  # noqa: E402
from pipeline.network import build_fields  # noqa: E402
from pipeline.run.plan import iter_shards, shard_batches  # noqa: E402


def job_config(args: argparse.Namespace, dtype: str, compile_: bool, actors: int, output: str, cuda: bool) -> JobConfig:
    return validate_config({
        "run": {"num_samples": args.num_samples, "seed": 0, "shard_size": args.shard_size, "batch_size": args.batch,
                "output": output, "overwrite": True, "progress": "none"},
        "model": {"factory": "benchmarks.nets:build_unet", "kwargs": {"size": args.size}, "interface": "edm",
                  "interface_kwargs": {"precond": True}, "shape": [3, 32, 32], "dtype": dtype, "compile": compile_},
        "sampler": {"name": "heun", "steps": args.steps, "time_dist": "karras"},
        "cluster": {"num_workers": actors, "gpus_per_worker": (1.0 / actors) if cuda else 0.0,
                    "cpus_per_worker": args.cpus_per_worker},
    })


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def noise_share(cfg: JobConfig, device: torch.device, repeats: int = 3) -> tuple[float, float]:
    """(seconds of one batch of edm_stochastic sampling, seconds of its noise draws alone): best of `repeats`."""
    import samplers

    sampler = samplers.build("edm_stochastic", steps=cfg.sampler.steps, time_dist="karras", S_churn=40.0)
    net, _ = build_fields(cfg.model.model_copy(update={"dtype": "float32", "compile": False}), 1.0, device)
    n, shape = cfg.run.batch_size, tuple(cfg.model.shape)

    def draws() -> None:  # the start noise and one draw per step (churn draws at every step but the last)
        noise = samplers.SampleNoise(cfg.run.seed, 0, n, device)
        x = noise.start(shape, torch.float32)
        for k in range(sampler.steps):
            noise.step(k, x)

    def best(run) -> float:
        times = []
        for _ in range(repeats):
            sync(device)
            t = time.perf_counter()
            run()
            sync(device)
            times.append(time.perf_counter() - t)
        return min(times)

    sample = lambda: sampler.sample(n, device, net=net, shape=shape, seed=cfg.run.seed)  # noqa: E731
    sample(), draws()  # warm-up
    return best(sample), best(draws)


@torch.inference_mode()
def bare(cfg: JobConfig, device: torch.device) -> tuple[float, float]:
    """(seconds of the first batch, seconds of all the others): the bare sampler loop on `device`."""
    sampler = driver.build_sampler(cfg)
    net, _ = build_fields(cfg.model, 1.0, device)
    batches = [b for s in iter_shards(cfg.run.num_samples, cfg.run.shard_size) for b in shard_batches(s, cfg.run.batch_size)]
    times = []
    for start, stop in batches:
        sync(device)
        t = time.perf_counter()
        sampler.sample(stop - start, device, net=net, shape=tuple(cfg.model.shape), seed=cfg.run.seed, start_index=start)
        sync(device)
        times.append(time.perf_counter() - t)
    del net
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return times[0], sum(times[1:])


def main(argv: list[str] | None = None) -> None:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run; tiny net on CPU)")
    p.add_argument("--size", choices=["tiny", "small", "edm"], default=None, help="U-Net size (default: edm on CUDA)")
    p.add_argument("--batch", type=int, default=None, help="run.batch_size (default 256 on CUDA)")
    p.add_argument("--shard-size", type=int, default=None, help="run.shard_size (default 2 batches)")
    p.add_argument("--num-samples", type=int, default=None, help="default 16 batches on CUDA")
    p.add_argument("--steps", type=int, default=None, help="Heun steps (default 18: 35 network calls)")
    p.add_argument("--dtypes", nargs="+", default=None, choices=["float32", "bfloat16", "float16"])
    p.add_argument("--compile", nargs="+", default=None, choices=["off", "on"])
    p.add_argument("--actors", nargs="+", type=int, default=None, help="actor counts sharing the device")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    small = args.quick or not cuda
    defaults = dict(size="tiny" if small else "edm", batch=16 if small else 256, steps=4 if small else 18,
                    dtypes=["float32", "bfloat16"] if small else ["float32", "bfloat16", "float16"],
                    compile=["off"] if small else ["off", "on"], actors=[1, 2] if not args.quick or cuda else [1])
    if args.quick and cuda:
        defaults.update(size="small", steps=4)
    elif args.quick:  # the autocast path; float32 runs in the noise share below
        defaults.update(dtypes=["bfloat16"])
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.shard_size = args.shard_size or 2 * args.batch
    args.num_samples = args.num_samples or (2 if args.quick else 16) * args.batch
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(max(1, int(args.cpus_per_worker)))  # as in the actor

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.pop("RAY_ADDRESS", None)
    temp_dir = tempfile.mkdtemp(prefix="ssgpu-", dir="/tmp")
    out_dir = tempfile.mkdtemp(prefix="ssgpu-out-")
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, int(max(args.actors) * args.cpus_per_worker + 0.999)),
             num_gpus=1 if cuda else 0, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False,
             configure_logging=False)
    ray_start = time.perf_counter() - t0
    rows = []
    cfg = job_config(args, "float32", False, 1, os.path.join(out_dir, "job"), cuda)
    sample_s, noise_s = noise_share(cfg, device)
    try:
        for dtype, comp in itertools.product(args.dtypes, args.compile):
            cfg = job_config(args, dtype, comp == "on", 1, os.path.join(out_dir, "job"), cuda)
            n, b = cfg.run.num_samples, cfg.run.batch_size
            firsts, rests = zip(*(bare(cfg, device) for _ in range(args.repeats)))
            first, rest = statistics.median(firsts), statistics.median(rests)
            steady, cold = (n - b) / rest if rest > 0 else float("nan"), n / (first + rest)
            for actors in args.actors:
                cfg = job_config(args, dtype, comp == "on", actors, os.path.join(out_dir, "job"), cuda)
                runs = [timed_job(cfg) for _ in range(args.repeats)]
                job_s = statistics.median(r["total"] - r["start"] for r in runs)
                start = statistics.median(r["start"] for r in runs)
                rows.append((dtype, comp, actors, steady, cold, first, n / job_s, n / job_s / cold, start))
    finally:
        ray.shutdown()
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)

    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} thread(s))"
    print(f"{name}; U-Net {args.size!r}, batch {args.batch}, shard {args.shard_size}, {args.num_samples} samples, "
          f"Heun {args.steps} steps (karras); Ray start (once) {ray_start:.1f} s; torch {torch.__version__}\n")
    print("| dtype | compile | actors | bare samples/s (steady) | bare samples/s (incl. warm-up) | first batch s "
          "| job samples/s | job / bare (incl. warm-up) | actor start s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype, comp, actors, steady, cold, first, job_rate, ratio, start in rows:
        print(f"| {dtype} | {comp} | {actors} | {steady:.1f} | {cold:.1f} | {first:.2f} | {job_rate:.1f} | {ratio:.3f} "
              f"| {start:.2f} |")
    share = noise_s / sample_s
    print(f"\nNoise (scheme v2 on {device.type}): {noise_s * 1e3:.2f} ms of a {sample_s * 1e3:.1f} ms batch of edm_stochastic "
          f"(S_churn=40, {args.steps} steps, batch {args.batch}): {share:.2%}; target < 2%: "
          + (("met." if share < 0.02 else "MISSED.") if cuda else "not measured (CPU: smoke only)."))


if __name__ == "__main__":
    main()
