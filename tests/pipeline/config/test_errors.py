"""Config errors: every user error is one line per problem naming the field path and the bad value."""

import pytest

from tests.pipeline.config.files import error_lines, with_changes, write_job
from tests.pipeline.jobs import DELETE


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
     ["sampler.guidance_scale=2.0 needs a guide: set model.guide (autoguidance), model.num_classes "
      "(classifier-free guidance on class labels) or conditioning.negative_prompt / negative_columns"]),
    ("cfg-without-labels", {"run__labels": "none"}, ["sampler.guidance_scale=2.0", "run.labels"]),
    ("null-label-without-classes", {"model__num_classes": DELETE, "run__labels": "none",
                                    "sampler__guidance_scale": 1.0, "model__null_label": 3},
     ["model.null_label: needs num_classes", "3"]),
    ("guide-shape-mismatch", {"model__guide": {**_GUIDE, "shape": [1, 8, 9]}},
     ["model.guide.shape: must equal model.shape=[1, 8, 8]", "[1, 8, 9]"]),
]


@pytest.mark.parametrize("changes, expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_is_one_line_naming_field_and_value(tmp_path, demo_data, changes, expected):
    lines = error_lines(write_job(tmp_path, with_changes(demo_data, **changes)))
    assert len(lines) == 1, lines
    for text in expected:
        assert text in lines[0], (text, lines[0])


def test_several_problems_give_one_line_each(tmp_path, demo_data):
    data = with_changes(demo_data, run__num_samples=-5, run__bogus=1, sampler__name="foo", cluster__num_workers=0)
    lines = error_lines(write_job(tmp_path, data))
    assert len(lines) == 4, lines
    assert {line.split(":")[0] for line in lines} == {
        "run.num_samples", "run.bogus", "sampler.name", "cluster.num_workers"}


def test_cross_field_problems_are_each_one_line(tmp_path, demo_data):
    data = with_changes(demo_data, model__num_classes=DELETE)
    lines = error_lines(write_job(tmp_path, data))
    assert len(lines) == 2, lines
    assert lines[0].startswith("run.labels:") and lines[1].startswith("sampler.guidance_scale=2.0 needs a guide")
