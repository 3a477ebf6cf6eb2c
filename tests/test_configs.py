"""Every example job in configs/ loads through the real config loader; those whose weights can be stood in for by
tiny random models saved in tmp (or need none) run end to end (the driver's prepare and the worker's code, in
process) on a few samples, and verify."""

from pathlib import Path

import pytest

from pipeline.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY_RUN = ["run.num_samples=2", "run.shard_size=2", "run.batch_size=2", "run.grid=0", "cluster.num_workers=1",
            "cluster.gpus_per_worker=0", "model.autocast=null", "run.progress=none"]


def ddim_overrides(tmp_path):
    from tests.pipeline.models.test_diffusers_folder import save_pipeline

    diffusers = pytest.importorskip("diffusers")
    save_pipeline(tmp_path / "ddpm", diffusers.DDIMPipeline, diffusers.DDIMScheduler())
    return [f"model.diffusers.path={tmp_path / 'ddpm'}", "model.shape=[3, 8, 8]", "sampler.steps=3"]


def dit_overrides(tmp_path):
    from tests.pipeline.models.test_latent_dit import save_dit_pipeline

    pytest.importorskip("diffusers")
    save_dit_pipeline(tmp_path / "dit")
    return [f"model.diffusers.path={tmp_path / 'dit'}", f"model.decoder.diffusers.path={tmp_path / 'dit'}",
            "model.shape=[4, 4, 4]", "model.decoder.shape=[3, 8, 8]", "model.num_classes=10", "sampler.steps=3",
            "run.store_latents=true"]


def table_overrides(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"label": [3, 5]}), tmp_path / "labels.parquet")
    return [f"conditioning.table={tmp_path / 'labels.parquet'}", "sampler.steps=4"]


def sd3_overrides(tmp_path):
    """Only the scheduler config: loading reads nothing else (the weights load when the job builds the model)."""
    diffusers = pytest.importorskip("diffusers")
    diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(tmp_path / "sd3" / "scheduler")
    return [f"model.diffusers.path={tmp_path / 'sd3'}", f"model.decoder.diffusers.path={tmp_path / 'sd3'}"]


# file: (overrides standing in for its downloads, runs end to end here, loading reads its model folder)
EXAMPLES = {
    "demo.yaml": (lambda tmp_path: ["metrics.fid=null"], True, False),
    "diffusers_ddim.yaml": (ddim_overrides, True, True),
    "latent_dit.yaml": (dit_overrides, True, True),
    "class_table.yaml": (table_overrides, True, False),
    "edm_pickle.yaml": (lambda tmp_path: [], False, False),  # EDM's code and a pickle: nothing tiny stands in
    "sd3_flow.yaml": (sd3_overrides, False, True),
}


def test_every_config_is_an_example_here():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_config_loads_and_runs(tmp_path, name):
    from pipeline.config import ConfigError
    from pipeline.output.verify import verify_output
    from tests.pipeline.jobs import run_in_process

    substitute, runs, reads_folder = EXAMPLES[name]
    if reads_folder:  # the scheduler config of its diffusers folder, which is not here: one clear line
        with pytest.raises(ConfigError, match=r"^model.diffusers: cannot read the scheduler config '/models/"):
            load_config(str(CONFIGS / name))
    else:
        assert load_config(str(CONFIGS / name)).run.num_samples >= 1000  # as written
    cfg = load_config(str(CONFIGS / name), [*substitute(tmp_path), *TINY_RUN, f"run.output={tmp_path / 'out'}"])
    assert cfg.run.num_samples == 2
    if runs:
        manifest = run_in_process(cfg)
        assert manifest.status == "complete" and manifest.num_samples == 2
        assert verify_output(cfg.run.output) == []
