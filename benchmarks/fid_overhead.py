"""Streaming FID statistics: their cost as a fraction of a generation run.

1. Job: the demo job (digits flow net, Heun 16 steps, classifier-free guidance 2.0, 1 actor of
   1 CPU) run with and without `metrics.fid` (the shipped digits extractor: features on the
   actor, per-shard FeatureStats merged on the driver, Frechet distance at the end), in ABBA
   rounds; the overhead is the median of the per-round fractions (t_fid / t_plain - 1), actor
   start excluded. On a shared machine single runs scatter by 10-20 %, hence also:
2. In process, per shard: the time of the actor's FID work (`features_stats` on the stored
   samples) next to the time of sampling that shard (`sample_shard`), measured back to back,
   so load from elsewhere hits both alike (in a fresh process set up like an actor).
3. Driver side: merging one shard's FeatureStats, and the final Frechet distance, for the
   digits features (64-d) and for Inception-v3 pool3 features (2048-d, synthetic).
4. `--flops` (on by default): Inception-v3 (299x299) FLOPs per image next to the FLOPs of
   a sample from the EDM-sized U-Net (benchmarks.nets, 35 network calls): the fraction FID
   features add where an accelerator runs both at the same efficiency.

    python benchmarks/fid_overhead.py            # full run (a few minutes)
    python benchmarks/fid_overhead.py --quick    # smoke run: 1 shard of 50, 1 round, 256-d for 2048-d
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.pipeline_efficiency import job as timed_job  # noqa: E402
from pipeline.run import driver  # noqa: E402
from pipeline.config import JobConfig, validate_config  # noqa: E402
from pipeline.fid.extractors import build_extractor  # noqa: E402
from pipeline.fid.features import features_stats  # noqa: E402
from pipeline.fid.reference import fid_from_stats  # noqa: E402
from pipeline.fid.stats import FeatureStats  # noqa: E402
from pipeline.network import build_fields, model_identity  # noqa: E402
from pipeline.run.plan import iter_shards  # noqa: E402
from pipeline.run.sampling import SampleSpec, sample_shard  # noqa: E402
from pipeline.output.dtypes import to_stored  # noqa: E402
from pipeline.run.worker import MALLOC_ENV  # noqa: E402


FULL_SHARD, QUICK_SHARD = (250, 125), (50, 25)  # (shard_size, batch_size) of the full run and of --quick


def demo_config(output: str, num_samples: int, fid: bool, shard: tuple[int, int] = FULL_SHARD) -> JobConfig:
    return validate_config({
        "run": {"num_samples": num_samples, "seed": 0, "shard_size": shard[0], "batch_size": shard[1], "output": output,
                "labels": "balanced", "overwrite": True, "progress": "none"},
        "model": {"factory": "pipeline.models.digits:build_demo", "interface": "flow", "shape": [1, 8, 8],
                  "num_classes": 10},
        "sampler": {"name": "heun", "steps": 16, "guidance_scale": 2.0},
        "cluster": {"num_workers": 1, "cpus_per_worker": 1},
        "metrics": {"fid": {"extractor": "digits"}} if fid else {},
    })


def job_rounds(out_dir: str, num_samples: int, rounds: int, shard: tuple[int, int]) -> dict[str, Any]:
    """ABBA rounds of the demo job without / with metrics.fid; seconds exclude the actor start."""
    cfgs = {fid: demo_config(os.path.join(out_dir, f"fid-{fid}"), num_samples, fid, shard) for fid in (False, True)}
    model_identity(cfgs[False].model, {})  # imports the model's modules once, like the Ray start
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for fid in ((False, True) if r % 2 == 0 else (True, False)):
            with contextlib.redirect_stdout(io.StringIO()):  # the job prints its FID line
                t = timed_job(cfgs[fid])
            times[fid].append(t["total"] - t["start"])
    fractions = [with_fid / plain - 1 for plain, with_fid in zip(times[False], times[True])]
    return {"plain": statistics.median(times[False]), "fid": statistics.median(times[True]),
            "fraction": statistics.median(fractions), "lo": min(fractions), "hi": max(fractions)}


def in_process(num_samples: int, shard: tuple[int, int]) -> dict[str, float]:
    """Seconds of sampling and of the actor's FID work (features of the stored samples), shard by shard,
    in a fresh process set up like an actor (1 thread, MALLOC_ENV)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_in_process, (num_samples, shard))


def _in_process(num_samples: int, shard: tuple[int, int]) -> dict[str, float]:
    torch.set_num_threads(1)  # as in a 1-CPU actor
    cfg = demo_config("unused", num_samples, True, shard)
    sampler = driver.build_sampler(cfg)
    net, g_net = build_fields(cfg.model, cfg.sampler.guidance_scale, "cpu")
    spec = SampleSpec.from_config(cfg)
    extractor = build_extractor("digits")
    sample_s = fid_s = 0.0
    for shard in iter_shards(num_samples, cfg.run.shard_size):
        t0 = time.perf_counter()
        samples, _, _ = sample_shard(sampler, net, g_net, spec, shard, cfg.run.batch_size, "cpu")
        stored = to_stored(samples, cfg.run.dtype)
        t1 = time.perf_counter()
        features_stats(extractor, stored, cfg.run.dtype)
        t2 = time.perf_counter()
        sample_s, fid_s = sample_s + t1 - t0, fid_s + t2 - t1
    return {"sample": sample_s, "fid": fid_s, "shards": num_samples // cfg.run.shard_size}


def driver_side(dim: int, repeats: int) -> dict[str, float]:
    """Seconds to merge one shard's FeatureStats of dimension `dim`, and to compute the Frechet distance
    (a matrix square root: seconds at 2048-d, so at most 3 repeats)."""
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((max(2 * dim, 256), dim))
    part, ref = FeatureStats().update(feats), FeatureStats().update(feats[::-1] * 1.1 + 0.1)
    total = FeatureStats(dim)
    merges, fids = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        total.merge(part)
        merges.append(time.perf_counter() - t)
        if len(fids) < 3:
            t = time.perf_counter()
            fid_from_stats(part, ref)
            fids.append(time.perf_counter() - t)
    return {"merge": statistics.median(merges), "frechet": statistics.median(fids)}


def flops() -> dict[str, float]:
    """FLOPs of Inception-v3 pool3 features of one image vs one EDM-sized U-Net call on 3x32x32."""
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.nets import build_unet
    from pipeline.models.inception import FIDInceptionV3

    def count(fn: Any) -> int:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    inception = FIDInceptionV3().eval()
    unet = build_unet("edm")
    x = torch.zeros(1, 3, 32, 32)
    return {"inception": count(lambda: inception.pool3(x)), "unet": count(lambda: unet(x, torch.zeros(1)))}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 shard of 50, 1 round, 256-d for 2048-d (a smoke run)")
    p.add_argument("--num-samples", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--flops", action=argparse.BooleanOptionalAction, default=True, help="default: on")
    args = p.parse_args(argv)
    n, rounds, shard = (50, 1, QUICK_SHARD) if args.quick else (args.num_samples, args.rounds, FULL_SHARD)
    wide = 256 if args.quick else 2048  # the Inception-v3 column: a 2048-d matrix square root takes seconds
    os.environ.update(MALLOC_ENV)  # the actors' malloc settings, for the in-process measurement's process

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.pop("RAY_ADDRESS", None)
    temp_dir = tempfile.mkdtemp(prefix="ssfid-", dir="/tmp")
    out_dir = tempfile.mkdtemp(prefix="ssfid-out-")
    ray.init(address="local", num_cpus=1, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False,
             configure_logging=False)
    try:
        job = job_rounds(out_dir, n, rounds, shard)
    finally:
        ray.shutdown()
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)
    local = in_process(n, shard)
    drv = {dim: driver_side(dim, 1 if args.quick else 10) for dim in (64, wide)}

    print(f"Demo job: {n} samples, shards of {shard[0]}, batch {shard[1]}, Heun 16 steps, guidance 2.0, 1 actor (1 CPU); "
          f"{rounds} round(s), medians\n")
    print("| measurement | without FID | with FID (digits) | overhead |")
    print("|---|---|---|---|")
    print(f"| job, s (actor start excluded) | {job['plain']:.2f} | {job['fid']:.2f} "
          f"| {100 * job['fraction']:+.1f} % [{100 * job['lo']:+.1f}, {100 * job['hi']:+.1f}] |")
    print(f"| in process, sampling vs FID features per shard, ms | {1e3 * local['sample'] / local['shards']:.1f} "
          f"| {1e3 * local['fid'] / local['shards']:.2f} | {100 * local['fid'] / local['sample']:+.2f} % |")
    print(f"\n| driver side | digits (64-d) | Inception-v3 ({wide}-d) |")
    print("|---|---|---|")
    print(f"| merge one shard's FeatureStats, ms | {1e3 * drv[64]['merge']:.3f} | {1e3 * drv[wide]['merge']:.1f} |")
    print(f"| Frechet distance at the end, s | {drv[64]['frechet']:.4f} | {drv[wide]['frechet']:.2f} |")
    print(f"| FeatureStats returned per shard, MB | {(64 * 65 * 8) / 2**20:.2f} | {(wide * (wide + 1) * 8) / 2**20:.1f} |")
    if args.flops:
        f = flops()
        nfe = 35
        print("\n| FLOPs per sample | Inception-v3 features | EDM-sized U-Net x 35 calls (Heun 18) | features / sampling |")
        print("|---|---|---|---|")
        print(f"| GFLOP | {f['inception'] / 1e9:.2f} | {nfe * f['unet'] / 1e9:.1f} | "
              f"{100 * f['inception'] / (nfe * f['unet']):.1f} % |")


if __name__ == "__main__":
    main()
