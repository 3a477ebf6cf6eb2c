"""Waiting for workers: the autoscaler is asked for the workers' bundles, the wait is logged and bounded.
tests/e2e/test_autoscaling.py runs it against Ray's fake autoscaling cluster."""

import logging

import pytest

from pipeline.run.cluster import ClusterError, wait_for_resources, worker_bundles
from pipeline.config import ClusterConfig


def test_worker_bundles_one_per_worker():
    assert worker_bundles(ClusterConfig(num_workers=3, gpus_per_worker=0.5, cpus_per_worker=2)) == [
        {"CPU": 2, "GPU": 0.5}] * 3
    assert worker_bundles(ClusterConfig(num_workers=2)) == [{"CPU": 1}] * 2  # no GPU key on a CPU job


@pytest.fixture
def requests(monkeypatch):
    """The bundles passed to ray.autoscaler.sdk.request_resources, in order (the call itself still runs)."""
    import ray.autoscaler.sdk

    calls, real = [], ray.autoscaler.sdk.request_resources
    monkeypatch.setattr(ray.autoscaler.sdk, "request_resources", lambda **kw: (calls.append(kw["bundles"]), real(**kw)))
    return calls


def test_no_wait_fails_at_once_without_asking(ray_local, requests):
    cluster = ClusterConfig(num_workers=2, gpus_per_worker=1)
    with pytest.raises(ClusterError, match=r"^cluster.num_workers=2 x cluster.gpus_per_worker=1 needs 2 GPUs, but the "
                                           r"Ray cluster has 0; on an autoscaling cluster set cluster.wait_for_workers_s"):
        wait_for_resources(cluster)
    assert requests == []


def test_wait_asks_the_autoscaler_reports_and_fails_after_the_limit(ray_local, requests, caplog):
    cluster = ClusterConfig(num_workers=2, gpus_per_worker=1, wait_for_workers_s=1.5)
    with caplog.at_level(logging.WARNING, logger="pipeline.run.cluster"):
        with pytest.raises(ClusterError) as info:
            wait_for_resources(cluster, poll_s=0.1, report_every_s=0.5)
    message = str(info.value)
    assert "\n" not in message and message.startswith("cluster.num_workers=2 x cluster.gpus_per_worker=1 needs 2 GPUs")
    assert "after waiting 1.5s (cluster.wait_for_workers_s)" in message
    assert requests == [[{"CPU": 1, "GPU": 1}] * 2, []]  # asked for one bundle per worker, then withdrawn
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("asked the autoscaler for 2 x {CPU: 1, GPU: 1}; waiting up to 1.5s")
    assert any(line.startswith("still waiting for 2 x {CPU: 1, GPU: 1}") for line in lines[1:])


def test_resources_that_are_there_need_no_request(ray_local, requests):
    wait_for_resources(ClusterConfig(num_workers=1, wait_for_workers_s=60))
    assert requests == []


def test_an_interrupt_while_the_private_ray_starts_stops_it_and_removes_its_temp_dir(shared_ray, monkeypatch):
    """Ctrl-C (or SIGTERM) landing in ray.init: what it started is shut down and its temp dir removed."""
    import glob

    import ray

    from pipeline.run.cluster import ray_session

    shared_ray.stop()  # this test starts (and interrupts) a private Ray of its own
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    real_init, seen = ray.init, []

    def interrupted_init(*args, **kwargs):
        seen.append(kwargs["_temp_dir"])
        real_init(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "init", interrupted_init)
    before = set(glob.glob("/tmp/ss-ray-*"))
    with pytest.raises(KeyboardInterrupt), ray_session(ClusterConfig(num_workers=1)):
        pass
    assert seen and not ray.is_initialized()
    assert not set(glob.glob("/tmp/ss-ray-*")) - before
