"""A latent model: a tiny random DiT with a tiny random AutoencoderKL (both diffusers folders); the job decodes each
batch before storage and equals DiTPipeline from the same start noise."""

import numpy as np
import pytest
import torch

import samplers
from pipeline.config import ConfigError, validate_config
from pipeline.handle import SamplingHandle
from tests.pipeline.jobs import run_in_process

diffusers = pytest.importorskip("diffusers")


def save_dit_pipeline(path):
    torch.manual_seed(0)
    transformer = diffusers.DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=1, sample_size=4,
        patch_size=2, num_embeds_ada_norm=10, norm_num_groups=4)
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4,
        sample_size=8)
    pipe = diffusers.DiTPipeline(transformer=transformer.eval(), vae=vae.eval(),
                                 scheduler=diffusers.DPMSolverMultistepScheduler())
    pipe.save_pretrained(path)
    return pipe


def dit_job(tmp_path, **run):
    folder = str(tmp_path / "dit")
    return validate_config({
        "run": {"num_samples": 4, "seed": 3, "shard_size": 4, "batch_size": 4, "output": str(tmp_path / "out"),
                "labels": "balanced", **run},
        "model": {"diffusers": {"path": folder, "subfolder": "transformer"}, "shape": [4, 4, 4], "num_classes": 10,
                  "decoder": {"diffusers": {"path": folder, "subfolder": "vae"}, "shape": [3, 8, 8]}},
        "sampler": {"name": "dpmpp_2m", "steps": 6, "time_dist": "diffusers"},
        "cluster": {"num_workers": 1},
    })


def test_latent_dit_job_equals_dit_pipeline(tmp_path, monkeypatch):
    """Measured max |job - DiTPipeline| on images in [-1, 1]: 3e-7."""
    pipe = save_dit_pipeline(tmp_path / "dit")
    cfg = dit_job(tmp_path)
    ours = SamplingHandle.from_config(cfg).sample(4)
    assert ours.shape == (4, 3, 8, 8)
    start = samplers.SampleNoise(3, 0, 4).start((4, 4, 4), torch.float32)
    monkeypatch.setattr("diffusers.pipelines.dit.pipeline_dit.randn_tensor", lambda shape, **_: start.clone())
    images = pipe(class_labels=[0, 1, 2, 3], guidance_scale=1.0, num_inference_steps=6, output_type="np").images
    reference = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2) * 2 - 1
    err = (ours.clamp(-1, 1) - reference).abs().max().item()
    assert err <= 1e-5, err


def test_decoder_needs_one_source(tmp_path):
    save_dit_pipeline(tmp_path / "dit")
    data = dit_job(tmp_path).resolved()
    data["model"]["decoder"]["factory"] = "pkg.mod:build"
    with pytest.raises(ConfigError, match=r"model.decoder: .*needs exactly one of diffusers \(a folder\) or factory"):
        validate_config(data)


@pytest.mark.slow
def test_ray_job_stores_decoded_images_and_hashes_the_decoder(ray_local, tmp_path):
    from pipeline.run.driver import run_job
    from pipeline.output.reader import read_samples

    save_dit_pipeline(tmp_path / "dit")
    cfg = dit_job(tmp_path)
    manifest = run_job(cfg)
    assert manifest.schema_["shape"] == [3, 8, 8] and len(manifest.model["decoder"]["sha256"]) == 64
    stored = torch.as_tensor(read_samples(cfg.run.output))
    assert torch.allclose(stored, SamplingHandle.from_config(cfg).sample(4), rtol=0, atol=1e-5)


def handle_latents(cfg):
    """The sampler's output before decoding, computed in this process shard by shard, as the job batches it."""
    from pipeline.run.plan import iter_shards

    handle = SamplingHandle.from_config(cfg)
    handle.decoder = None
    return np.concatenate([handle.sample(s.size, start_index=s.start).numpy()
                           for s in iter_shards(cfg.run.num_samples, cfg.run.shard_size)])


@pytest.mark.parametrize("fmt", ["parquet", "safetensors", "webdataset"])
def test_store_latents_keeps_the_pre_decode_latents(tmp_path, fmt):
    from pipeline.output.reader import read_latents, read_samples
    from pipeline.output.verify import verify_output

    save_dit_pipeline(tmp_path / "dit")
    cfg = dit_job(tmp_path, format=fmt, store_latents=True, shard_size=3, batch_size=2)
    manifest = run_in_process(cfg)
    assert manifest.schema_["latent"] == {"shape": [4, 4, 4], "dtype": "float32"}
    assert verify_output(cfg.run.output) == []
    latents = read_latents(cfg.run.output)
    assert latents.shape == (4, 4, 4, 4) and latents.dtype == np.float32
    np.testing.assert_array_equal(latents, handle_latents(cfg))  # same batches, same process: same bits
    np.testing.assert_array_equal(read_latents(cfg.run.output, [3, 0]), latents[[3, 0]])
    assert read_samples(cfg.run.output).shape == (4, 3, 8, 8)
    first = tmp_path / "out" / f"shard-00000.{ {'parquet': 'parquet', 'safetensors': 'safetensors'}.get(fmt, 'tar')}"
    if fmt == "parquet":  # plain pyarrow and pandas see a nested float32 array column
        import pyarrow.parquet as pq

        table = pq.read_table(first)
        assert table.column_names[:4] == ["index", "label", "sample", "latent"]
        np.testing.assert_array_equal(np.array(table["latent"].to_pylist(), np.float32), latents[:3])
        frame = table.to_pandas()
        np.testing.assert_array_equal(np.array(frame["latent"].map(lambda z: np.stack([np.stack(r) for r in z]))
                                               .tolist()), latents[:3])
    elif fmt == "safetensors":
        import safetensors.numpy

        np.testing.assert_array_equal(safetensors.numpy.load_file(first)["latent"], latents[:3])
    else:
        import io
        import tarfile

        with tarfile.open(first) as tar:
            member = tar.extractfile("0000000002.latent.npy").read()
        np.testing.assert_array_equal(np.load(io.BytesIO(member)), latents[2])


def test_store_latents_needs_a_decoder_and_joins_the_fingerprint(tmp_path):
    from pipeline.run.fingerprint import fingerprint_fields

    save_dit_pipeline(tmp_path / "dit")
    data = dit_job(tmp_path).resolved()
    data["model"]["decoder"] = None
    data["run"]["store_latents"] = True
    with pytest.raises(ConfigError, match=r"run.store_latents: true needs model.decoder .*\(got model.decoder=None\)"):
        validate_config(data)
    plain, stored = dit_job(tmp_path), dit_job(tmp_path, store_latents=True)
    assert "run.store_latents" not in fingerprint_fields(plain, {}, {}, "v", {})  # older fingerprints unchanged
    assert fingerprint_fields(stored, {}, {}, "v", {})["run.store_latents"] is True
