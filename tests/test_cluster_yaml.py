"""Deployment files: cluster.yaml passes Ray's own cluster-launcher validation, and the
KubeRay RayJob in docs/kuberay.md is well formed."""

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_matches_ray_schema(cluster):
    """The file as written validates against the schema shipped in the installed Ray."""
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)


def test_ray_up_validation(cluster):
    """What `ray up` runs before touching the cloud: fill in the provider defaults, then
    validate (schema, head node type, min/max workers, docker settings)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cluster)))


@pytest.mark.parametrize(
    "path, value",
    [(("setup_comands",), []), (("available_node_types", "gpu_worker", "resources", "GPU"), 0.5),
     (("available_node_types", "gpu_worker", "min_worker"), 0)],
    ids=["typo-top", "fractional-gpu", "typo-node-type"],
)
def test_ray_validation_catches_mistakes(cluster, path, value):
    """The checks above are not vacuous: typos and bad values fail them."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = copy.deepcopy(cluster)
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(bad))


def test_seedshard_layout(cluster):
    assert cluster["cluster_name"] == "seedshard"
    assert cluster["provider"]["type"] == "aws"
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != cluster["head_node_type"]]
    assert len(workers) == 1
    (gpu,) = workers
    assert gpu["resources"]["GPU"] == 1 and gpu["node_config"]["InstanceType"].startswith("g")
    assert gpu["min_workers"] == 0 and gpu["max_workers"] == cluster["max_workers"] == 8
    # The package is installed from the synced working tree.
    assert any("seedshard" in remote for remote in cluster["file_mounts"])
    assert all((ROOT / local).exists() for local in cluster["file_mounts"].values())
    assert any("pip install" in cmd and "seedshard" in cmd for cmd in cluster["setup_commands"])


def _ray_start_flags(commands: list[str]) -> list[str]:
    flags = []
    for cmd in commands:
        for part in cmd.split(";"):
            words = shlex.split(part)
            if words[:2] == ["ray", "start"]:
                flags += [w.split("=")[0] for w in words[2:] if w.startswith("--")]
    return flags


def test_ray_start_flags_exist(cluster):
    from ray.scripts.scripts import start

    known = {opt for param in start.params for opt in param.opts}
    head = _ray_start_flags(cluster["head_start_ray_commands"])
    worker = _ray_start_flags(cluster["worker_start_ray_commands"])
    assert "--head" in head and "--address" in worker
    assert set(head + worker) <= known, set(head + worker) - known
    # The head advertises no CPUs both to the autoscaler and to Ray itself.
    head_type = cluster["available_node_types"][cluster["head_node_type"]]
    assert "--num-cpus" in head and head_type["resources"]["CPU"] == 0


# --------------------------------------------------------------------------- KubeRay


@pytest.fixture(scope="module")
def rayjob() -> dict:
    text = (ROOT / "docs" / "kuberay.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)]
    jobs = [b for b in blocks if isinstance(b, dict) and b.get("kind") == "RayJob"]
    assert len(jobs) == 1
    return jobs[0]


def test_rayjob(rayjob, cluster):
    assert rayjob["apiVersion"] == "ray.io/v1"
    spec = rayjob["spec"]
    assert spec["entrypoint"] == "python -m jobs.generate configs/demo.yaml"
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert "://" in env["working_dir"] and any(p.startswith("torch") for p in env["pip"])

    ray_cluster = spec["rayClusterSpec"]
    head = ray_cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    (group,) = ray_cluster["workerGroupSpecs"]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    worker = group["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # Same Ray version everywhere: RayJob, its images, and the cluster launcher image.
    version = ray_cluster["rayVersion"]
    assert head["image"].startswith(f"rayproject/ray:{version}-")
    assert worker["image"].startswith(f"rayproject/ray:{version}-")
    assert cluster["docker"]["image"].startswith(f"rayproject/ray:{version}-")
