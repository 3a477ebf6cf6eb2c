"""SamplerWorker: its process setup and what `run` reports about its own time."""

from __future__ import annotations

import re
import threading
import time

from pipeline.run import driver
from pipeline.run.plan import iter_shards
from pipeline.run.worker import MALLOC_ENV, SamplerWorker
from tests.pipeline.jobs import gaussian_job


def test_actors_start_with_the_malloc_settings(ray_local, tmp_path):
    import psutil

    cfg = gaussian_job(str(tmp_path / "out"), cluster={"num_workers": 1})
    actors, _ = driver.start_workers(cfg, driver.build_sampler(cfg).save(), None, None)
    try:
        pid = ray_local.get(actors[0].ready.remote())["pid"]
        environ = psutil.Process(pid).environ()
    finally:
        for actor in actors:
            ray_local.kill(actor)
    assert {k: environ.get(k) for k in MALLOC_ENV} == MALLOC_ENV


def test_sample_time_excludes_waiting_for_the_other_call(ray_local, tmp_path):
    """Two calls at once sample one after the other (one lock); each reports only its own sampling,
    so the two sampling times add up to no more than the wall time of both calls."""
    cfg = gaussian_job(str(tmp_path / "out"), run={"num_samples": 400, "shard_size": 200}, sampler={"steps": 64})
    worker = SamplerWorker(cfg.resolved(), driver.build_sampler(cfg).save())
    shards = list(iter_shards(cfg.run.num_samples, cfg.run.shard_size))
    results: list = []
    threads = [threading.Thread(target=lambda s=s: results.append(worker.run(s))) for s in shards]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    assert [r.rows for r in results] == [200, 200]
    assert all(r.record is not None and r.write_s >= 0 for r in results)
    assert sum(r.sample_s for r in results) <= wall


def test_a_worker_runs_the_jobs_thread_count_and_refuses_another_torch_or_device(ray_local, tmp_path):
    """Threads, torch version, device type and CPU kernels are in the job's fingerprint: they change bytes."""
    import pytest
    import torch

    from pipeline.run.fingerprint import cpu_kernels, torch_threads

    cfg = gaussian_job(str(tmp_path / "out"), cluster={"cpus_per_worker": 2})
    before = torch.get_num_threads()
    try:
        SamplerWorker(cfg.resolved(), driver.build_sampler(cfg).save())
        assert torch.get_num_threads() == torch_threads(cfg) == 2
        with pytest.raises(RuntimeError, match=rf"this worker runs device 'cpu' \(the job's: 'cuda'\), torch '{re.escape(torch.__version__)}' "
                                               r"\(the job's: '0.0'\); the job's fingerprint needs the same on every worker"):
            SamplerWorker(cfg.resolved(), driver.build_sampler(cfg).save(), None, {"device": "cuda", "torch": "0.0"})
        with pytest.raises(RuntimeError, match=rf"this worker runs cpu '{re.escape(cpu_kernels())}' \(the job's: "
                                               r"'riscv64 RVV'\); .* set ATEN_CPU_CAPABILITY alike for the driver"):
            SamplerWorker(cfg.resolved(), driver.build_sampler(cfg).save(), None, {"cpu": "riscv64 RVV"})
    finally:
        torch.set_num_threads(before)
