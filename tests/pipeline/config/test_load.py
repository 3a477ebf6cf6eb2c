"""Loading a job file: YAML, `key.path=value` overrides typed as YAML, and one line per problem in the file
or in an override."""

import pytest

from pipeline.config import load_config
from tests.pipeline.config.files import DEMO, error_lines, with_changes, write_job
from tests.pipeline.jobs import DELETE


def test_overrides_nested_and_yaml_typed(tmp_path, demo_data):
    path = write_job(tmp_path, with_changes(demo_data, cluster=DELETE))
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
    cfg = load_config(write_job(tmp_path, demo_data), [
        "model.guide={factory: 'pipeline.models.digits:build_demo', interface: flow, shape: [1, 8, 8]}",
        "model.guide.kwargs.width=8",
        "model.num_classes=null", "run.labels=none",
    ])
    assert cfg.model.guide is not None and cfg.model.guide.kwargs == {"width": 8}
    assert cfg.sampler.guidance_scale == 2.0  # autoguidance, no classes needed


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
    lines = error_lines(write_job(tmp_path, text))
    assert len(lines) == 1, lines
    for part in expected:
        assert part in lines[0], (part, lines[0])


def test_override_below_a_scalar_in_the_file(tmp_path, demo_data):
    lines = error_lines(write_job(tmp_path, with_changes(demo_data, run=5)), ["run.seed=1"])
    assert lines == ["override 'run.seed=1': run is 5 in the file, not a mapping"]


def test_a_quoted_override_keeps_its_hash(tmp_path, demo_data):
    cfg = load_config(write_job(tmp_path, demo_data), ['run.output="out/run #1"', "run.label=3", "run.labels=fixed"])
    assert cfg.run.output == "out/run #1"
    assert load_config(write_job(tmp_path, demo_data), ["run.output=out/run#1"]).run.output == "out/run#1"


def test_unreadable_file(tmp_path):
    lines = error_lines(str(tmp_path / "nope.yaml"))
    assert len(lines) == 1 and "nope.yaml: cannot read config" in lines[0]
    lines = error_lines(str(tmp_path))  # a directory
    assert len(lines) == 1 and "cannot read config" in lines[0]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("run.num_samples", ["override 'run.num_samples': expected key.path=value"]),
        ("=5", ["override '=5': expected key.path=value"]),
        ("run.seed=", ["override 'run.seed=': empty value", "run.seed=null"]),
        ("run..seed=1", ["bad key path 'run..seed'", "dot-separated field names such as run.num_samples"]),
        ("model.shape.0=2", ["bad key path 'model.shape.0'", "dot-separated field names"]),
        # a ' #' starts a YAML comment: the samples would go silently to 'out/run' (and seed 3 would become 3)
        ("run.output=out/run #1", ["override 'run.output=out/run #1'", "YAML comment '#1'", "quote the value"]),
        ("run.seed=3 # was 4", ["override 'run.seed=3 # was 4'", "YAML comment '# was 4'"]),
        # a block mapping or sequence value hides its comment the same way (model.kwargs {'name': 'run'})
        ("model.kwargs=name: run #1", ["override 'model.kwargs=name: run #1'", "YAML comment '#1'"]),
        ("model.shape=- 1 # was 3", ["override 'model.shape=- 1 # was 3'", "YAML comment '# was 3'"]),
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
    lines = error_lines(str(DEMO), [override])
    assert len(lines) == 1, lines
    for part in expected:
        assert part in lines[0], (part, lines[0])
