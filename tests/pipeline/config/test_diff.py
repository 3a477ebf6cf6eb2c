"""Resume comparison: config_diff names the fields that change the samples and skips RESUME_IGNORED."""

from pipeline.config import RESUME_IGNORED, config_diff, load_config
from tests.pipeline.config.files import DEMO


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
