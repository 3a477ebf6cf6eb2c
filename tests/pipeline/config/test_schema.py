"""Job config schema: the demo loads with its defaults, and every name chosen from a list is checked
against the registry of the module that owns it."""

import re

import pytest
import yaml

import samplers
from pipeline import network
from pipeline.fid import extractors
from pipeline.output import codecs, dtypes
from pipeline.config import ConfigError, JobConfig, load_config, validate_config
from samplers import schedules, step
from tests.pipeline.config.files import DEMO, error_lines, with_changes, write_job
from tests.pipeline.jobs import DELETE


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
    cfg = load_config(write_job(tmp_path, with_changes(demo_data, cluster=DELETE, metrics=DELETE)))
    assert cfg.cluster.num_workers == 1 and cfg.cluster.max_shard_attempts == 3
    assert cfg.metrics.fid is None


def test_yaml_ints_accepted_for_floats(tmp_path, demo_data):
    data = with_changes(demo_data, sampler__guidance_scale=3, cluster__cpus_per_worker=2,
                        sampler__time_dist="karras", sampler__time_kwargs={"rho": 7})
    cfg = load_config(write_job(tmp_path, data))
    assert cfg.sampler.guidance_scale == 3.0 and isinstance(cfg.sampler.guidance_scale, float)
    assert cfg.sampler.time_kwargs == {"rho": 7.0}


def test_time_kwargs_take_a_list_or_a_scheduler_config(tmp_path, demo_data):
    explicit = with_changes(demo_data, sampler__time_dist="explicit", sampler__time_kwargs={"t": [1, 0.5, 0.1]})
    cfg = load_config(write_job(tmp_path, explicit))
    assert cfg.sampler.time_kwargs == {"t": [1.0, 0.5, 0.1]}
    ddim = {"_class_name": "DDIMScheduler", "clip_sample": False}
    cfg = validate_config(with_changes(demo_data, sampler__time_dist="diffusers",
                                       sampler__time_kwargs={"scheduler_config": ddim}))
    assert cfg.sampler.time_kwargs == {"scheduler_config": ddim}
    for dist, kwargs, problem in [
        ("explicit", {"t": [0.5, 1.0]}, "explicit: t must be strictly decreasing, got [0.5, 1.0]"),
        ("karras", {"rho": [7]}, "must be numbers for time_dist='karras' (got {'rho': [7.0]})"),
        ("diffusers", {"scheduler_config": [1.0]}, "scheduler_config must be a scheduler_config.json path or its dict"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(f"sampler.time_kwargs: {problem}")):
            validate_config(with_changes(demo_data, sampler__time_dist=dist, sampler__time_kwargs=kwargs))


def test_checkpoint_url_with_query_is_accepted(tmp_path, demo_data):
    url = "https://example.org/nets/edm-cifar10.safetensors?download=1"
    assert load_config(write_job(tmp_path, with_changes(demo_data, model__checkpoint=url))).model.checkpoint == url


def test_unknown_sampler_name_lists_the_registry(tmp_path, demo_data):
    cfg = load_config(write_job(tmp_path, with_changes(demo_data, sampler__name="dpmpp_2m")))
    assert cfg.sampler.name == "dpmpp_2m"
    lines = error_lines(write_job(tmp_path, with_changes(demo_data, sampler__name="foo")))
    assert lines == ["sampler.name: unknown 'foo'; allowed: euler, heun, euler_maruyama, euler_jump, "
                     "dpmpp_2m, edm_stochastic, ddim, langevin, gaussian_noise"]


# Each config choice and the registry that owns its names.
CHOICES = [
    ("sampler.name", samplers.SAMPLERS),
    ("sampler.time_dist", schedules.DEFAULT_SAMPLING_TIME_KWARGS),
    ("sampler.dtype", step.DTYPES),
    ("model.interface", samplers.INTERFACES),
    ("model.dtype", network.NET_DTYPES),
    ("run.format", codecs.FORMATS),
    ("run.dtype", dtypes.SAMPLE_DTYPES),
    ("metrics.fid.extractor", extractors.EXTRACTORS),
    ("run.noise_scheme", ["auto", *samplers.NOISE_SCHEMES]),
]


@pytest.mark.parametrize("path, registry", CHOICES, ids=[c[0] for c in CHOICES])
def test_each_choice_allows_exactly_its_registry(demo_data, path, registry):
    """Every registry name is accepted, and the error for a bad one lists exactly the registry's names."""
    for name in registry:
        cfg = validate_config(with_changes(demo_data, **{path.replace(".", "__"): name}))
        section, field = path.rsplit(".", 1)
        node = cfg
        for part in section.split("."):
            node = getattr(node, part)
        assert getattr(node, field) == name
    with pytest.raises(ConfigError) as info:
        validate_config(with_changes(demo_data, **{path.replace(".", "__"): "no_such_name"}))
    assert info.value.problems == [f"{path}: unknown 'no_such_name'; allowed: {', '.join(registry)}"]
