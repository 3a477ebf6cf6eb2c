"""A job asking for GPU workers on an autoscaling cluster that has none yet: the driver asks Ray's
autoscaler for the workers' bundles, the (fake) GPU nodes come up, and the job completes."""

import json
import logging
from pathlib import Path

import pytest

from pipeline.run.driver import run_job
from pipeline.output.manifest import read_manifest
from pipeline.output.fs import open_output
from tests.e2e.raycluster import RayHead, free_ports
from tests.pipeline.jobs import digests, gaussian_job, reference_digests

pytestmark = pytest.mark.slow


def fake_autoscaling_config(gcs_address: str) -> dict:
    """A cluster for Ray's fake_multinode provider (nodes are local raylets started by the autoscaler):
    a head with no GPU, and a node type advertising 1 CPU + 1 GPU, scaled from 0 to 2 on demand.
    Written out in full: ray.cluster_utils.AutoscalingCluster builds this from an example.yaml that the
    Ray wheel does not ship, and its start()/shutdown() run `ray stop --force`, which would stop every
    Ray on the machine."""
    return {
        "cluster_name": "seedshard-fake",
        "max_workers": 2,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 1,
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address, "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            "fake_gpu": {"resources": {"CPU": 1, "GPU": 1, "object_store_memory": 100_000_000},
                         "node_config": {}, "min_workers": 0, "max_workers": 2},
        },
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@pytest.fixture(scope="module")
def autoscaling_head(tmp_path_factory):
    """A private `ray start --head` (1 CPU, 0 GPUs) whose autoscaler launches fake GPU nodes; stopped by PID."""
    from ray.autoscaler._private.util import validate_config

    (port,) = free_ports(1)
    config = fake_autoscaling_config(f"127.0.0.1:{port}")
    validate_config(config)  # the autoscaler itself only logs a bad config at debug level
    path = tmp_path_factory.mktemp("fake-cluster") / "autoscaling.json"
    path.write_text(json.dumps(config))
    head = RayHead(num_cpus=1, gcs_port=port, extra_args=["--num-gpus", "0", f"--autoscaling-config={path}"],
                   env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"})
    try:
        head.wait_ready()
        yield head
    finally:
        head.stop()
    assert head.own_pids() == [], "processes of the fake cluster (head or autoscaled nodes) survived stop()"
    assert not Path(head.temp_dir).exists(), "the fake cluster's temp dir was left behind"


def test_gpu_job_scales_the_fake_cluster_up_and_completes(autoscaling_head, tmp_path, monkeypatch, caplog):
    """The head has no GPU: the job's two 1-GPU workers fit only once the autoscaler added two fake GPU
    nodes, which it does because the driver asked for the bundles. CPU-only torch: the workers sample on CPU."""
    import ray

    from tests.pipeline.conftest import SHARED_RAY

    SHARED_RAY.stop()  # where tests/pipeline ran first in this session
    assert not ray.is_initialized(), "run_job would use the Ray this process is already connected to"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = gaussian_job(str(tmp_path / "out"), cluster={"address": autoscaling_head.gcs_address, "num_workers": 2,
                                                        "gpus_per_worker": 1, "wait_for_workers_s": 300, "device": "cpu"})
    with caplog.at_level(logging.INFO):
        manifest = run_job(cfg)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("asked the autoscaler for 2 x {CPU: 1, GPU: 1}") for line in lines), lines
    assert any(line.startswith("the cluster holds the workers after") for line in lines), lines
    ready = next(line for line in lines if line.startswith("workers ready:"))
    assert ready.count("'device': 'cpu'") == 2, ready
    assert manifest.status == "complete"
    assert read_manifest(*open_output(cfg.run.output)).status == "complete"
    assert digests(manifest) == reference_digests(cfg)
