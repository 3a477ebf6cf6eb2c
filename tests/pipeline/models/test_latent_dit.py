"""A latent model: a tiny random DiT with a tiny random AutoencoderKL (both diffusers folders); the job decodes each
batch before storage and equals DiTPipeline from the same start noise."""

import numpy as np
import pytest
import torch

import samplers
from pipeline.config import ConfigError, validate_config
from pipeline.handle import SamplingHandle

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
