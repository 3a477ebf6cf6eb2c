"""The KubeRay RayJob in docs/kuberay.md: its fields against the RayJob CRD, its cluster through the code
Ray's KubeRay autoscaler runs on it, its entrypoint through seedshard's config loader, and its pip list
against pyproject's pins.

No installed package ships KubeRay's CRD (ray.io_rayjobs.yaml, about 1 MB of OpenAPI schema, mostly the
Kubernetes pod template), so RAYJOB_SCHEMA below is a minimal JSON schema written from that CRD's
`v1` openAPIV3Schema for exactly the fields this manifest uses: their types, the string-only maps
(rayStartParams), int32 replica counts, and no unknown keys at the RayJob / RayCluster levels (the API
server prunes unknown fields silently, so a typo there would be lost without an error). The pod
templates themselves are not checked against the Kubernetes schema.
"""

import re

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

from tests.deployment import (PLACEHOLDER, ROOT, ci_torch_version, edited, fits_pyproject, job_config, pyproject,
                              torch_pin, undocumented_fill_ins)

INT32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
POD_TEMPLATE = {"type": "object", "required": ["spec"], "properties": {"spec": {
    "type": "object", "required": ["containers"],
    "properties": {"containers": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "image": {"type": "string"}}}}}}}}
RAYJOB_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "entrypoint": {"type": "string"},
                "runtimeEnvYAML": {"type": "string"},
                "shutdownAfterJobFinishes": {"type": "boolean"},
                "ttlSecondsAfterFinished": INT32,
                "backoffLimit": INT32,
                "activeDeadlineSeconds": INT32,
                "rayClusterSpec": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["headGroupSpec"],
                    "properties": {
                        "rayVersion": {"type": "string"},
                        "enableInTreeAutoscaling": {"type": "boolean"},
                        "headGroupSpec": {
                            "type": "object", "additionalProperties": False, "required": ["template"],
                            "properties": {"rayStartParams": STRING_MAP, "template": POD_TEMPLATE},
                        },
                        "workerGroupSpecs": {"type": "array", "items": {
                            "type": "object", "additionalProperties": False, "required": ["groupName", "template"],
                            "properties": {"groupName": {"type": "string"}, "replicas": INT32, "minReplicas": INT32,
                                           "maxReplicas": INT32, "rayStartParams": STRING_MAP, "template": POD_TEMPLATE},
                        }},
                    },
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def doc() -> str:
    return (ROOT / "docs" / "kuberay.md").read_text()


@pytest.fixture(scope="module")
def rayjob(doc) -> dict:
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", doc, re.DOTALL)]
    jobs = [b for b in blocks if isinstance(b, dict) and b.get("kind") == "RayJob"]
    assert len(jobs) == 1
    return jobs[0]


def test_matches_the_rayjob_crd_fields(rayjob):
    jsonschema.validate(rayjob, RAYJOB_SCHEMA)


@pytest.mark.parametrize("path, value", [
    (("spec", "shutdownAfterJobFinish"), True),
    (("spec", "rayClusterSpec", "headGroupSpec", "rayStartParams", "num-cpus"), 0),
    (("spec", "rayClusterSpec", "workerGroupSpecs", 0, "maxReplicas"), "8"),
], ids=["typo", "non-string-start-param", "string-replicas"])
def test_crd_check_catches_mistakes(rayjob, path, value):
    bad = edited(rayjob, path, value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, RAYJOB_SCHEMA)


def test_ray_derives_the_autoscaling_cluster(rayjob):
    """What Ray's KubeRay autoscaler does with the RayCluster: node types from rayStartParams and container
    limits, then Ray's own config validation. The head offers no CPU; the GPU group has 1 GPU per pod."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    cluster = rayjob["spec"]["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    config = _derive_autoscaling_config_from_ray_cr(
        {"metadata": {"name": rayjob["metadata"]["name"], "namespace": "default"}, "spec": cluster})
    types = config["available_node_types"]
    assert types["headgroup"]["resources"]["CPU"] == 0 and "GPU" not in types["headgroup"]["resources"]
    gpu = types["gpu"]
    assert gpu["resources"]["GPU"] == 1 and gpu["resources"]["CPU"] == 4
    assert (gpu["min_workers"], gpu["max_workers"]) == (0, 8)


def test_entrypoint_fits_and_waits_for_the_autoscaler(rayjob):
    cfg = job_config(rayjob["spec"]["entrypoint"])
    (group,) = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert cfg.cluster.num_workers * cfg.cluster.gpus_per_worker <= group["maxReplicas"]  # 1 GPU per pod
    assert cfg.cluster.wait_for_workers_s >= 300  # GPU pods take minutes to schedule, pull and install
    assert cfg.run.output.startswith("s3://")  # the pods' disks are deleted with the cluster


def test_pip_matches_pyproject(rayjob):
    """pyproject's dependencies and the s3 extra, same specifiers; ray from the image (its version checked
    below); torch pinned to CI's version, which pyproject allows."""
    env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    pip = {Requirement(r).name: r for r in env["pip"]}
    project = pyproject()["project"]
    wanted = {Requirement(r).name: r for r in project["dependencies"] + project["optional-dependencies"]["s3"]}
    assert "ray" not in pip and wanted.pop("ray") and wanted.pop("torch")
    assert torch_pin(pip.pop("torch")) == ci_torch_version() and fits_pyproject(f"torch=={ci_torch_version()}")
    assert pip == wanted


def test_torch_fit_for_each_pod(rayjob):
    """One pip list for every pod: the head's PIP_INDEX_URL makes it the CPU wheel there, while the GPU pods
    (no pip settings) get PyPI's CUDA build; CPU image on the head, CUDA image on the workers."""
    cluster = rayjob["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in head["env"]}
    assert env["PIP_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert env["PIP_EXTRA_INDEX_URL"] == "https://pypi.org/simple"  # everything but torch
    assert "nvidia.com/gpu" not in head["resources"]["limits"] and not head["image"].endswith("-gpu")
    (group,) = cluster["workerGroupSpecs"]
    worker = group["template"]["spec"]["containers"][0]
    assert not any(e["name"].startswith("PIP_") for e in worker.get("env", []))
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1" and worker["image"].endswith("-gpu")


def test_one_ray_version_everywhere(rayjob):
    """RayJob, its images, and the cluster launcher's images run the same Ray."""
    cluster = rayjob["spec"]["rayClusterSpec"]
    version = cluster["rayVersion"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    (group,) = cluster["workerGroupSpecs"]
    worker = group["template"]["spec"]["containers"][0]
    launcher = yaml.safe_load((ROOT / "cluster.yaml").read_text())["docker"]
    for image in (head["image"], worker["image"], launcher["head_image"], launcher["worker_image"]):
        assert image.startswith(f"rayproject/ray:{version}-"), image


def test_fill_ins_are_named_and_there_are_no_guesses(doc):
    (documented,) = [p for p in doc.split("\n\n") if p.startswith("Values to fill in:")]
    assert undocumented_fill_ins(doc, documented) == set()
    assert PLACEHOLDER.findall(doc) == []
