"""Job config: the demo loads, overrides are YAML-typed, and every user error is one line
per problem naming the field path and the bad value."""

import copy
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import (
    RESUME_IGNORED,
    ConfigError,
    JobConfig,
    config_diff,
    load_config,
)
from tests.pipeline.jobs import DELETE, set_path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo.yaml"


@pytest.fixture(scope="module")
def demo_data() -> dict:
    return yaml.safe_load(DEMO.read_text())


def _with(data: dict, **changes) -> dict:
    """A deep copy of `data` with dotted paths set (`run__seed=1` sets run.seed) or deleted."""
    out = copy.deepcopy(data)
    for key, value in changes.items():
        set_path(out, key.replace("__", "."), value)
    return out


def _write(tmp_path: Path, data) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _error_lines(path: str, overrides=()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    assert str(info.value) == "\n".join(info.value.problems)
    return str(info.value).splitlines()


# --------------------------------------------------------------------------- valid configs


def test_demo_loads():
    cfg = load_config(str(DEMO))
    assert cfg.run.num_samples == 1000 and cfg.run.shard_size == 250 and cfg.run.batch_size == 125
    assert cfg.run.output == "out/demo" and cfg.run.labels == "balanced"
    assert cfg.model.factory == "pipeline.models.digits:build_demo"
    assert cfg.model.interface == "flow" and cfg.model.shape == [1, 8, 8]
    assert cfg.model.num_classes == 10 and cfg.model.null_label == 10  # CFG null label default
    assert cfg.sampler.name == "heun" and cfg.sampler.steps == 16
    assert cfg.sampler.time_dist == "uniform" and cfg.sampler.guidance_scale == 2.0
    assert cfg.cluster.address is None and cfg.cluster.num_workers == 2
    assert cfg.cluster.gpus_per_worker == 0
    assert cfg.metrics.fid is not None and cfg.metrics.fid.extractor == "digits"


def test_resolved_is_json_and_round_trips():
    cfg = load_config(str(DEMO))
    resolved = cfg.resolved()
    assert resolved["run"]["format"] == "parquet" and resolved["cluster"]["max_in_flight"] == 2
    assert yaml.safe_load(yaml.safe_dump(resolved)) == resolved
    assert JobConfig.model_validate(resolved) == cfg


def test_defaults_for_optional_sections(tmp_path, demo_data):
    cfg = load_config(_write(tmp_path, _with(demo_data, cluster=DELETE, metrics=DELETE)))
    assert cfg.cluster.num_workers == 1 and cfg.cluster.max_shard_attempts == 3
    assert cfg.metrics.fid is None


def test_yaml_ints_accepted_for_floats(tmp_path, demo_data):
    data = _with(demo_data, sampler__guidance_scale=3, cluster__cpus_per_worker=2,
                 sampler__time_dist="karras", sampler__time_kwargs={"rho": 7})
    cfg = load_config(_write(tmp_path, data))
    assert cfg.sampler.guidance_scale == 3.0 and isinstance(cfg.sampler.guidance_scale, float)
    assert cfg.sampler.time_kwargs == {"rho": 7.0}


def test_overrides_nested_and_yaml_typed(tmp_path, demo_data):
    path = _write(tmp_path, _with(demo_data, cluster=DELETE))
    cfg = load_config(path, [
        "run.num_samples=100",
        "run.output=memory://runs/a=b",          # only the first '=' splits
        "sampler.time_dist=karras",
        "sampler.time_kwargs={rho: 7, sigma_max: 80}",
        "sampler.guidance_interval=[0.2, 0.8]",
        "model.kwargs.width=64",                 # inside a free-form dict
        "model.guide=null",
        "cluster.gpus_per_worker=0.5",           # section absent from the file
        "cluster.num_workers=4",
        "run.labels=fixed",
        "run.label=3",
    ])
    assert cfg.run.num_samples == 100 and cfg.run.output == "memory://runs/a=b"
    assert cfg.sampler.time_kwargs == {"rho": 7.0, "sigma_max": 80.0}
    assert cfg.sampler.guidance_interval == [0.2, 0.8]
    assert cfg.model.kwargs == {"width": 64} and cfg.model.guide is None
    assert cfg.cluster.gpus_per_worker == 0.5 and cfg.cluster.num_workers == 4
    assert cfg.run.label == 3


def test_override_sets_a_guide(tmp_path, demo_data):
    cfg = load_config(_write(tmp_path, demo_data), [
        "model.guide={factory: 'pipeline.models.digits:build_demo', interface: flow, shape: [1, 8, 8]}",
        "model.guide.kwargs.width=8",
        "model.num_classes=null", "run.labels=none",
    ])
    assert cfg.model.guide is not None and cfg.model.guide.kwargs == {"width": 8}
    assert cfg.sampler.guidance_scale == 2.0  # autoguidance, no classes needed


def test_sampler_names_fall_back_without_samplers(tmp_path, demo_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "samplers", None)  # makes `import samplers` fail
    cfg = load_config(_write(tmp_path, _with(demo_data, sampler__name="dpmpp_2m")))
    assert cfg.sampler.name == "dpmpp_2m"
    lines = _error_lines(_write(tmp_path, _with(demo_data, sampler__name="foo")))
    assert lines == ["sampler.name: unknown 'foo'; allowed: euler, heun, euler_maruyama, euler_jump, "
                     "dpmpp_2m, edm_stochastic, ddim, langevin, gaussian_noise"]


# --------------------------------------------------------------------------- bad configs

_GUIDE = {"factory": "pipeline.models.digits:build_demo", "interface": "flow", "shape": [1, 8, 8]}

# (id, changes to the demo, substrings that the single error line must contain)
BAD = [
    ("unknown-top", {"bogus": 1}, ["bogus: unknown field", "allowed: run, model, sampler, cluster, metrics"]),
    ("unknown-run", {"run__bogus": 1}, ["run.bogus: unknown field", "allowed: num_samples, seed"]),
    ("unknown-model", {"model__width": 64}, ["model.width: unknown field", "kwargs"]),
    ("unknown-guide", {"model__guide": {**_GUIDE, "ckpt": "x"}}, ["model.guide.ckpt: unknown field", "checkpoint"]),
    ("unknown-sampler", {"sampler__S_churn": 40}, ["sampler.S_churn: unknown field", "kwargs"]),
    ("unknown-cluster", {"cluster__gpus": 1}, ["cluster.gpus: unknown field", "gpus_per_worker"]),
    ("unknown-fid", {"metrics__fid__reference": "x.npz"}, ["metrics.fid.reference: unknown field", "ref"]),
    ("str-for-int", {"run__num_samples": "100"}, ["run.num_samples: must be an integer", "'100'"]),
    ("float-for-int", {"sampler__steps": 1.5}, ["sampler.steps: must be an integer", "1.5"]),
    ("bool-for-int", {"run__seed": True}, ["run.seed: must be an integer", "True"]),
    ("str-for-bool", {"run__overwrite": "yes"}, ["run.overwrite: must be true or false", "'yes'"]),
    ("str-in-shape", {"model__shape": [1, 8, "8"]}, ["model.shape[2]: must be an integer", "'8'"]),
    ("section-not-mapping", {"run": 5}, ["run: must be a mapping", "5"]),
    ("missing-section", {"sampler": DELETE}, ["sampler: required field missing"]),
    ("missing-field", {"run__seed": DELETE}, ["run.seed: required field missing"]),
    ("negative-samples", {"run__num_samples": -5}, ["run.num_samples: must be > 0 (got -5)"]),
    ("zero-shard", {"run__shard_size": 0}, ["run.shard_size: must be > 0 (got 0)"]),
    ("zero-batch", {"run__batch_size": 0}, ["run.batch_size: must be > 0 (got 0)"]),
    ("negative-seed", {"run__seed": -1}, ["run.seed: must be >= 0 (got -1)"]),
    ("huge-seed", {"run__seed": 2**64}, ["run.seed: must be <", str(2**64)]),
    ("zero-workers", {"cluster__num_workers": 0}, ["cluster.num_workers: must be >= 1 (got 0)"]),
    ("negative-gpus", {"cluster__gpus_per_worker": -0.5}, ["cluster.gpus_per_worker: must be >= 0", "-0.5"]),
    ("zero-steps", {"sampler__steps": 0}, ["sampler.steps: must be > 0 (got 0)"]),
    ("empty-output", {"run__output": ""}, ["run.output: must be non-empty", "''"]),
    ("empty-shape", {"model__shape": []}, ["model.shape: must have at least 1 item", "[]"]),
    ("zero-in-shape", {"model__shape": [1, 0, 8]}, ["model.shape[1]: must be > 0 (got 0)"]),
    ("unknown-sampler-name", {"sampler__name": "foo"}, ["sampler.name: unknown 'foo'; allowed: ", "heun"]),
    ("unknown-time-dist", {"sampler__time_dist": "cosine"},
     ["sampler.time_dist: unknown 'cosine'; allowed: uniform, exponential, karras, shift"]),
    ("unknown-time-kwarg", {"sampler__time_kwargs": {"sigma_mx": 80}}, ["sampler.time_kwargs: unknown 'sigma_mx'", "t_max"]),
    ("unknown-format", {"run__format": "csv"}, ["run.format: unknown 'csv'; allowed: parquet, safetensors"]),
    ("unknown-run-dtype", {"run__dtype": "int8"}, ["run.dtype: unknown 'int8'; allowed: float32, float16, uint8"]),
    ("unknown-model-dtype", {"model__dtype": "fp16"}, ["model.dtype: unknown 'fp16'; allowed: float32, float16, bfloat16"]),
    ("unknown-interface", {"model__interface": "ddpm"}, ["model.interface: unknown 'ddpm'; allowed: flow, edm"]),
    ("unknown-labels", {"run__labels": "random"}, ["run.labels: unknown 'random'; allowed: none, fixed"]),
    ("unknown-extractor", {"metrics__fid__extractor": "clip"}, ["metrics.fid.extractor: unknown 'clip'"]),
    ("bad-factory", {"model__factory": "pipeline.models.digits.build_demo"},
     ["model.factory: must be 'package.module:callable'", "'pipeline.models.digits.build_demo'"]),
    ("bad-guide-factory", {"model__guide": {**_GUIDE, "factory": "a b:c"}}, ["model.guide.factory:", "'a b:c'"]),
    ("bad-checkpoint", {"model__checkpoint": "s3://b/net.bin"}, ["model.checkpoint: must be a .safetensors", "'s3://b/net.bin'"]),
    ("zero-classes", {"model__num_classes": 0}, ["model.num_classes: must be > 0 (got 0)"]),
    ("bad-interval", {"sampler__guidance_interval": [0.8, 0.2]}, ["sampler.guidance_interval: must be [lo, hi]", "[0.8, 0.2]"]),
    ("negative-guidance", {"sampler__guidance_scale": -1.0}, ["sampler.guidance_scale: must be >= 0", "-1.0"]),
    ("fixed-without-label", {"run__labels": "fixed"}, ["run.label: required with run.labels='fixed'", "None"]),
    ("label-out-of-range", {"run__labels": "fixed", "run__label": 10}, ["run.label: must be in [0, 10)", "(got 10)"]),
    ("label-without-fixed", {"run__label": 3}, ["run.label: only allowed with run.labels='fixed'", "(got 3"]),
    ("labels-without-classes", {"model__num_classes": DELETE, "sampler__guidance_scale": 1.0},
     ["run.labels: 'balanced' needs model.num_classes", "None"]),
    ("guidance-without-guide", {"model__num_classes": DELETE, "run__labels": "none"},
     ["sampler.guidance_scale=2.0 needs a guide: set model.guide (autoguidance) or "
      "model.num_classes (classifier-free guidance)"]),
    ("cfg-without-labels", {"run__labels": "none"}, ["sampler.guidance_scale=2.0", "run.labels"]),
    ("null-label-without-classes", {"model__num_classes": DELETE, "run__labels": "none",
                                    "sampler__guidance_scale": 1.0, "model__null_label": 3},
     ["model.null_label: needs num_classes", "3"]),
    ("guide-shape-mismatch", {"model__guide": {**_GUIDE, "shape": [1, 8, 9]}},
     ["model.guide.shape: must equal model.shape=[1, 8, 8]", "[1, 8, 9]"]),
]


@pytest.mark.parametrize("changes, expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_is_one_line_naming_field_and_value(tmp_path, demo_data, changes, expected):
    lines = _error_lines(_write(tmp_path, _with(demo_data, **changes)))
    assert len(lines) == 1, lines
    for text in expected:
        assert text in lines[0], (text, lines[0])


def test_several_problems_give_one_line_each(tmp_path, demo_data):
    data = _with(demo_data, run__num_samples=-5, run__bogus=1, sampler__name="foo", cluster__num_workers=0)
    lines = _error_lines(_write(tmp_path, data))
    assert len(lines) == 4, lines
    assert {line.split(":")[0] for line in lines} == {
        "run.num_samples", "run.bogus", "sampler.name", "cluster.num_workers"}


def test_cross_field_problems_are_each_one_line(tmp_path, demo_data):
    data = _with(demo_data, model__num_classes=DELETE)
    lines = _error_lines(_write(tmp_path, data))
    assert len(lines) == 2, lines
    assert lines[0].startswith("run.labels:") and lines[1].startswith("sampler.guidance_scale=2.0 needs a guide")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("run:\n  seed: 1\n   bad: [\n", ["job.yaml:3:", "malformed YAML"]),
        ("run: {seed: 1\nmodel: 2\n", ["job.yaml:", "malformed YAML"]),
        ("run:\n  seed: 1\n  seed: 2\n", ["job.yaml:3:", "duplicate key 'seed'"]),
        ("- run\n- model\n", ["job.yaml: top level must be a mapping", "(got list)"]),
        ("", ["job.yaml: top level must be a mapping", "(got NoneType)"]),
        ("just a string\n", ["top level must be a mapping", "(got str)"]),
    ],
    ids=["bad-indent", "unclosed-flow", "duplicate-key", "top-level-list", "empty-file", "scalar"],
)
def test_bad_files(tmp_path, text, expected):
    lines = _error_lines(_write(tmp_path, text))
    assert len(lines) == 1, lines
    for part in expected:
        assert part in lines[0], (part, lines[0])


def test_checkpoint_url_with_query_is_accepted(tmp_path, demo_data):
    url = "https://example.org/nets/edm-cifar10.safetensors?download=1"
    assert load_config(_write(tmp_path, _with(demo_data, model__checkpoint=url))).model.checkpoint == url


def test_override_below_a_scalar_in_the_file(tmp_path, demo_data):
    lines = _error_lines(_write(tmp_path, _with(demo_data, run=5)), ["run.seed=1"])
    assert lines == ["override 'run.seed=1': run is 5 in the file, not a mapping"]


def test_unreadable_file(tmp_path):
    lines = _error_lines(str(tmp_path / "nope.yaml"))
    assert len(lines) == 1 and "nope.yaml: cannot read config" in lines[0]
    lines = _error_lines(str(tmp_path))  # a directory
    assert len(lines) == 1 and "cannot read config" in lines[0]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("run.num_samples", ["override 'run.num_samples': expected key.path=value"]),
        ("=5", ["override '=5': expected key.path=value"]),
        ("run.seed=", ["override 'run.seed=': empty value", "run.seed=null"]),
        ("run..seed=1", ["bad key path 'run..seed'"]),
        ("run.bogus=1", ["unknown field run.bogus", "allowed: num_samples"]),
        ("bogus.x=1", ["unknown field bogus", "allowed: run, model"]),
        ("model.guide.ckpt=x", ["unknown field model.guide.ckpt", "checkpoint"]),
        ("run.seed.x=1", ["run.seed is not a section"]),
        ("run.num_samples=[1, 2", ["override run.num_samples:", "malformed YAML"]),
        ("run.num_samples=-5", ["run.num_samples: must be > 0 (got -5)"]),
        ("run.num_samples='100'", ["run.num_samples: must be an integer", "'100'"]),
    ],
)
def test_bad_overrides(override, expected):
    lines = _error_lines(str(DEMO), [override])
    assert len(lines) == 1, lines
    for part in expected:
        assert part in lines[0], (part, lines[0])


# --------------------------------------------------------------------------- resume diff


def test_config_diff_finds_sampling_changes_and_ignores_cluster():
    base = load_config(str(DEMO)).resolved()

    def diff(*overrides, **kw):
        return config_diff(base, load_config(str(DEMO), overrides).resolved(), **kw)

    assert diff() == []
    assert diff("sampler.steps=32") == ["sampler.steps"]
    assert diff("run.seed=1", "sampler.guidance_scale=1.5") == ["run.seed", "sampler.guidance_scale"]
    assert diff("model.kwargs.width=64") == ["model.kwargs.width"]
    assert diff("run.dtype=float16", "run.format=safetensors") == ["run.dtype", "run.format"]
    assert diff("model.guide={factory: 'a:b', interface: flow, shape: [1, 8, 8]}") == ["model.guide"]
    assert diff("cluster.num_workers=8", "cluster.gpus_per_worker=0.5", "run.progress=log",
                "run.overwrite=true", "run.storage_options={anon: true}", "metrics.fid=null") == []
    assert diff("cluster.num_workers=8", ignore=()) == ["cluster.num_workers"]


def test_config_diff_plain_dicts():
    assert config_diff({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 1, "c": [1, 3]}}, ignore=()) == ["a.c"]
    assert config_diff({"a": {"b": 1}}, {"a": {}}, ignore=()) == ["a.b"]
    assert config_diff({"a": 1}, {"a": True}, ignore=()) == ["a"]
    assert config_diff({"a": 2}, {"a": 2.0}, ignore=()) == []
    assert config_diff({"ab": 1, "a": {"b": 1}}, {"ab": 2, "a": {"b": 2}}, ignore=("a",)) == ["ab"]


def test_resume_ignores_no_sampling_field():
    for path in ["run.seed", "run.num_samples", "run.shard_size", "run.batch_size", "run.dtype",
                 "run.format", "run.labels", "run.label", "run.on_nonfinite",
                 "model", "model.factory", "sampler", "sampler.steps"]:
        assert not any(path == p or path.startswith(p + ".") for p in RESUME_IGNORED), path
    assert "cluster" in RESUME_IGNORED and "run.progress" in RESUME_IGNORED
    assert "run.output" in RESUME_IGNORED  # a copied or moved output resumes where it now lives
