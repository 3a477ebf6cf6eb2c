"""A lost node (issue 15): on a local two-raylet Ray cluster (`ray start --head` plus `ray start --address`, each
with its own temp dir and free ports), killing the worker node mid-job lets the job finish on the head node with
bytes identical to a clean run. Every process is stopped by its PID; never `ray stop`."""

import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pipeline.run.driver import run_job
from tests.e2e.raycluster import RayHead, free_ports, ray_env
from tests.pipeline.jobs import payload_digests, probe_job, reference_payload_digests

pytestmark = pytest.mark.slow
# The GCS declares a silent node dead after health_check_failure_threshold missed checks, one every
# health_check_period_ms (defaults 5 x 3 s = 15 s of a ~24 s test); a test cluster may decide in ~1.5 s.
LOST_NODE_ENV = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                 "RAY_health_check_failure_threshold": "3"}


class RayWorkerNode(RayHead):
    """`ray start --address HEAD --block` with one CPU, its own temp dir and free ports."""

    def __init__(self, gcs_address: str) -> None:
        import sys

        self.temp_dir = tempfile.mkdtemp(prefix="rw", dir="/tmp")
        agent, metrics, runtime_env, node_manager, object_manager = free_ports(5)
        cmd = [str(Path(sys.executable).parent / "ray"), "start", "--address", gcs_address, "--block",
               "--temp-dir", self.temp_dir, "--num-cpus", "1", "--disable-usage-stats",
               "--dashboard-agent-listen-port", str(agent), "--metrics-export-port", str(metrics),
               "--runtime-env-agent-port", str(runtime_env), "--node-manager-port", str(node_manager),
               "--object-manager-port", str(object_manager)]
        self.log = open(Path(self.temp_dir) / "ray-start.log", "wb")
        self.proc = subprocess.Popen(cmd, env=ray_env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the node: its `ray start` session and every process naming its temp dir (raylet, workers)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in self.own_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def two_nodes(monkeypatch, shared_ray):
    """A 1-CPU head and a 1-CPU worker node, this process connected as the driver; yields the worker node."""
    ray = pytest.importorskip("ray")
    shared_ray.stop()  # this process joins the two-node cluster instead
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    head = RayHead(num_cpus=1, env=LOST_NODE_ENV)
    worker = None
    try:
        head.wait_ready()
        worker = RayWorkerNode(head.gcs_address)
        ray.init(address=head.gcs_address, log_to_driver=False, configure_logging=False)
        deadline = time.monotonic() + 120
        while ray.cluster_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ray.cluster_resources().get("CPU", 0) == 2, worker.output()[-2000:]
        yield worker
    finally:
        ray.shutdown()
        if worker is not None:
            worker.stop()
        head.stop()


def test_killing_the_worker_node_mid_job_finishes_on_the_head_with_the_same_bytes(two_nodes, tmp_path, caplog):
    worker = two_nodes
    markers = tmp_path / "markers"  # a file per Ray worker process that has started sampling
    markers.mkdir()
    cfg = probe_job(str(tmp_path / "out"), delay_s=0.05, marker_dir=str(markers))
    cfg = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"shard_timeout_s": 60.0})})
    out = cfg.run.output
    killed = []

    def kill_worker_node() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(os.listdir(markers)) >= 2:  # the workers on both nodes sample: the one on the node is mid-shard
                worker.kill()
                killed.append(time.monotonic())
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_worker_node, daemon=True)
    killer.start()
    with caplog.at_level(logging.WARNING, logger="pipeline.run"):
        manifest = run_job(cfg)
    killer.join()
    assert killed and manifest.status == "complete"
    # The replacement cannot be placed (the head's one CPU is taken): the job went on without waiting for it.
    assert time.monotonic() - killed[0] < cfg.cluster.shard_timeout_s
    assert payload_digests(out, manifest) == reference_payload_digests(probe_job(str(tmp_path / "ref")))
    assert "died" in "\n".join(r.getMessage() for r in caplog.records)  # the worker on the lost node
