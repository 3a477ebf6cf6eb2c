"""`ray job submit --working-dir . -- python -m jobs.generate ...` against a real `ray start --head`."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import read_samples
from pipeline.output.manifest import read_manifest
from pipeline.output.fs import open_output
from tests.e2e.raycluster import RayHead, ray_env

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def head():
    cluster = RayHead(num_cpus=2)
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()
    assert cluster.own_pids() == [], "Ray processes of the test cluster survived stop()"
    assert not Path(cluster.temp_dir).exists(), "the test cluster's temp dir was left behind"


def submit(head: RayHead, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", head.dashboard_url,
           "--working-dir", ".", "--", "python", "-m", "jobs.generate", *args]
    return subprocess.run(cmd, cwd=ROOT, env=ray_env(), capture_output=True, text=True, timeout=timeout)


def test_job_submit_generates_the_samples(head, tmp_path):
    config = {
        "run": {"num_samples": 50, "seed": 3, "shard_size": 20, "batch_size": 10, "output": str(tmp_path / "out"),
                "labels": "uniform"},
        "model": {"factory": "pipeline.models.gaussian:build_gaussian", "kwargs": {"interface": "flow"},
                  "interface": "flow", "shape": [2, 3], "num_classes": 4},
        "sampler": {"name": "heun", "steps": 6},
        "cluster": {"num_workers": 2},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    result = submit(head, str(path), "run.seed=4")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout
    assert "wrote 50 samples in 3 shards" in result.stdout
    manifest = read_manifest(*open_output(str(tmp_path / "out")))
    assert manifest.status == "complete" and manifest.config["run"]["seed"] == 4
    x, labels = read_samples(str(tmp_path / "out"), with_labels=True)
    assert x.shape == (50, 2, 3) and np.isfinite(x).all() and set(labels.tolist()) <= {0, 1, 2, 3}


def test_job_submit_reports_a_bad_config_as_a_failed_job(head, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("run: {num_samples: -1}\n")
    result = submit(head, str(path))
    assert result.returncode != 0
    assert "run.num_samples: " in result.stdout + result.stderr


def test_job_submit_refuses_a_relative_output_with_one_line(head, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "run": {"num_samples": 4, "seed": 0, "shard_size": 4, "batch_size": 4, "output": "out/relative"},
        "model": {"factory": "pipeline.models.gaussian:build_gaussian", "interface": "flow", "shape": [2]},
        "sampler": {"name": "euler", "steps": 2},
    }))
    result = submit(head, str(path))
    assert result.returncode != 0
    errors = {line for line in (result.stdout + result.stderr).splitlines() if "seedshard: error:" in line}
    assert len(errors) == 1 and "run.output: " in min(errors) and "absolute path or a URL" in min(errors), errors
    assert not (ROOT / "out" / "relative").exists()
