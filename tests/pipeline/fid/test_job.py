"""FID inside jobs: actor-side streaming statistics, resume, existing sample sets, reference datasets."""

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from pipeline.output.fs import open_output
from pipeline.config import load_config
from pipeline.run.driver import run_job
from pipeline.fid.extractors import build_extractor
from pipeline.fid.features import compute_stats
from pipeline.fid.job import dataset_stats
from pipeline.fid.reference import default_reference, fid_from_stats
from pipeline.fid.stats import FeatureStats
from pipeline.output.images import to_uint8
from pipeline.output.reader import read_samples

DEMO = "configs/demo.yaml"


@pytest.fixture
def ray_demo(ray_local):
    """The demo's two 1-CPU workers need a 2-CPU local Ray: the shared one."""


def demo(tmp_path, *overrides):
    return load_config(DEMO, [f"run.output={tmp_path / 'out'}", "run.progress=none", *overrides])


def assert_float32_close(stats: FeatureStats, expected: FeatureStats) -> None:
    """mu and sigma of float32 features computed in other batches (chunks, workers) agree to float32
    rounding, scaled by the statistics' magnitude: the extractor's kernels may round a batch of 40 and
    chunks of 15 differently (CPU vector width), so float64-tight tolerances are not portable."""
    tol = 64 * np.finfo(np.float32).eps
    for ours, ref in ((stats.mu, expected.mu), (stats.sigma, expected.sigma)):
        np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol * np.abs(ref).max())


def test_streaming_stats_equal_stats_of_the_stored_samples(ray_demo, tmp_path):
    cfg = demo(tmp_path, "run.num_samples=120", "run.shard_size=50", "run.batch_size=25", "run.dtype=uint8",
               "sampler.steps=4", "run.grid=0")
    manifest = run_job(cfg)
    x = read_samples(cfg.run.output)  # uint8: the FID is that of the stored (quantised) images
    expected = fid_from_stats(compute_stats(build_extractor("digits"), x), default_reference("digits"))
    assert manifest.metrics["fid"]["num_samples"] == 120
    assert manifest.metrics["fid"]["fid"] == pytest.approx(expected, rel=1e-9)
    report = json.loads((tmp_path / "out" / "__seedshard__" / "fid.json").read_text())
    assert report == manifest.metrics["fid"]


def test_resume_recomputes_the_statistics_of_resumed_shards(ray_demo, tmp_path):
    cfg = demo(tmp_path, "run.num_samples=120", "run.shard_size=50", "run.batch_size=25", "sampler.steps=4")
    first = run_job(cfg).metrics["fid"]["fid"]
    (tmp_path / "out" / "shard-00001.parquet").unlink()
    again = run_job(cfg)
    assert again.metrics["fid"]["fid"] == pytest.approx(first, rel=1e-9)


def test_fid_without_storing_samples(ray_demo, tmp_path):
    cfg = demo(tmp_path, "run.num_samples=60", "run.shard_size=30", "sampler.steps=4", "metrics.fid.store_samples=false",
               "run.grid=0")
    manifest = run_job(cfg)
    assert manifest.shards == [] and manifest.metrics["fid"]["num_samples"] == 60
    assert not list((tmp_path / "out").glob("shard-*"))


@pytest.mark.slow
def test_demo_fid_is_far_below_pure_noise(ray_demo, tmp_path):
    # Measured: demo (1000 samples, Heun 16 steps, CFG 2) ~0.9; two halves of the real digits 0.31;
    # pure noise ~47. A threshold of 3 leaves room for run-to-run noise of the estimate and fails for any
    # sampler or model regression that makes the digits unrecognisable.
    fid = run_job(demo(tmp_path)).metrics["fid"]["fid"]
    noise = run_job(load_config(DEMO, [f"run.output={tmp_path / 'noise'}", "run.progress=none", "run.grid=0",
                                       "sampler.name=gaussian_noise", "sampler.guidance_scale=1.0"])).metrics["fid"]["fid"]
    assert fid < 3.0 and noise > 20.0, (fid, noise)
    assert (tmp_path / "out" / "__seedshard__" / "grid.png").stat().st_size > 0


def _digits_uint8(n=64):
    from pipeline.models.digits import load_digits_data

    x, _ = load_digits_data()
    return np.clip(np.rint((x[:n].numpy() + 1) * 127.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["npy", "adm_npz", "png_dir", "zip"])
def test_reference_stats_of_datasets_equal_one_shot_stats(ray_demo, tmp_path, kind):
    images = _digits_uint8()
    if kind == "npy":
        source = tmp_path / "images.npy"
        np.save(source, images)
    elif kind == "adm_npz":  # ADM's layout, as `seedshard export --to npz` writes it: arr_0 (N, H, W, C), arr_1 labels
        source = tmp_path / "images.npz"
        np.savez(source, images.transpose(0, 2, 3, 1), np.arange(len(images)) % 10)
    else:
        source = tmp_path / "images"
        source.mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img[0]).save(source / f"{i:03d}.png")
        if kind == "zip":
            with zipfile.ZipFile(tmp_path / "images.zip", "w") as z:
                for p in sorted(source.iterdir()):
                    z.write(p, p.name)
            source = tmp_path / "images.zip"
    stats = dataset_stats(str(source), "digits", num_workers=2)
    one_shot = compute_stats(build_extractor("digits"), images)
    assert stats.n == 64
    assert_float32_close(stats, one_shot)


def test_dataset_stats_of_a_seedshard_output(ray_demo, tmp_path):
    cfg = demo(tmp_path, "run.num_samples=40", "run.shard_size=15", "sampler.steps=2", "metrics.fid=null", "run.grid=0")
    run_job(cfg)
    stats = dataset_stats(cfg.run.output, "digits", num_workers=2)
    # standard FID: the canonical uint8 images, featurised in the batches of the shards (15 rows)
    expected = compute_stats(build_extractor("digits"), to_uint8(read_samples(cfg.run.output)), batch_size=15)
    assert isinstance(stats, FeatureStats) and stats.n == 40
    assert_float32_close(stats, expected)


def test_unknown_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        dataset_stats(str(tmp_path / "empty"), "digits")
    open_output(str(tmp_path / "x"))


@pytest.mark.parametrize("override,match", [
    ("metrics.fid.ref=/nonexistent/ref.npz", "ref.npz"),
    ("metrics.fid.extractor=inception", "metrics.fid.ref is required for extractor 'inception'"),
])
def test_a_bad_reference_fails_before_sampling(tmp_path, override, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        run_job(demo(tmp_path, override))
    assert not (tmp_path / "out").exists()
