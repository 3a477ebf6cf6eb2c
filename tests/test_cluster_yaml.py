"""cluster.yaml passes Ray's own cluster-launcher validation, installs a torch fit for each node type
and seedshard with pyproject's pins, and the job command it documents is a valid job that fits the
cluster and waits for the autoscaler. The KubeRay RayJob is checked in tests/docs/test_kuberay.py."""

import copy
import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.deployment import (PLACEHOLDER, ROOT, ci_torch_version, edited, fits_pyproject, job_config, pyproject,
                              torch_pin, undocumented_fill_ins)


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

    bad = edited(cluster, path, value)
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
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any("pip install" in cmd and "seedshard" in cmd for cmd in cluster[key])


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


def header(cluster_text: str) -> str:
    """The comment block at the top of cluster.yaml, comment marks removed."""
    lines = []
    for line in cluster_text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines)


def test_torch_fit_for_each_node_type(cluster):
    """CPU wheel index on the CPU head, PyPI's CUDA build on the GPU workers, one version (CI's), installed
    before seedshard so that pip does not pick a torch of its own; CPU and CUDA images to match."""
    head, worker = cluster["head_setup_commands"], cluster["worker_setup_commands"]
    for commands, cpu in ((head, True), (worker, False)):
        (i,) = [k for k, cmd in enumerate(commands) if "torch==" in cmd]
        assert torch_pin(commands[i]) == ci_torch_version() and fits_pyproject(f"torch=={ci_torch_version()}")
        assert ("--index-url https://download.pytorch.org/whl/cpu" in commands[i]) is cpu
        (j,) = [k for k, cmd in enumerate(commands) if "cd ~/seedshard && pip install" in cmd]
        assert i < j
    docker = cluster["docker"]
    assert "image" not in docker and not docker["head_image"].endswith("-gpu") and docker["worker_image"].endswith("-gpu")


def test_seedshard_installed_with_pyproject_pins(cluster):
    """The synced tree is pip-installed (its pyproject's pins apply) with extras that exist."""
    extras = set(pyproject()["project"]["optional-dependencies"])
    for key in ("head_setup_commands", "worker_setup_commands"):
        (cmd,) = [c for c in cluster[key] if "cd ~/seedshard && pip install" in c]
        target = shlex.split(cmd.split("&&")[1])[3]
        assert target.startswith(".[") and set(target[2:-1].split(",")) <= extras, target


def test_documented_job_fits_and_waits_for_the_autoscaler(cluster):
    """The `ray job submit` command in the header is a valid job (config + overrides through seedshard's
    own loader) whose GPU workers fit the GPU node group, with a wait long enough for nodes to boot."""
    lines = header((ROOT / "cluster.yaml").read_text()).replace("\\\n", " ").splitlines()
    (submit,) = [line for line in lines if line.startswith("ray job submit ")]
    cfg = job_config(submit.split(" -- ", 1)[1])
    gpu = cluster["available_node_types"]["gpu_worker"]
    assert cfg.cluster.num_workers * cfg.cluster.gpus_per_worker <= gpu["max_workers"] * gpu["resources"]["GPU"]
    assert cfg.cluster.cpus_per_worker * cfg.cluster.gpus_per_worker <= gpu["resources"]["CPU"]
    assert cfg.cluster.wait_for_workers_s >= 300  # g5 nodes take minutes to boot and install
    assert cfg.run.output.startswith("s3://")  # node disks go away with the nodes


def test_fill_ins_are_named_and_there_are_no_guesses():
    text = (ROOT / "cluster.yaml").read_text()
    (documented,) = [line for line in header(text).splitlines() if line.startswith("Values to fill in:")]
    assert undocumented_fill_ins(text, documented) == set()
    assert PLACEHOLDER.findall(text) == []
