"""Diffusers `save_pretrained` folders as job models: the interface and grid follow the folder's scheduler, and a job
equals diffusers' own pipeline from the same start noise."""

import json

import numpy as np
import pytest
import torch

import samplers
from pipeline.config import ConfigError, validate_config
from pipeline.handle import SamplingHandle
from pipeline.models.diffusers_folder import FACTORY

diffusers = pytest.importorskip("diffusers")

UNET = dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=4, attention_head_dim=4)


def tiny_unet(**config):
    torch.manual_seed(0)
    return diffusers.UNet2DModel(**{**UNET, **config}).eval()


def tiny_cond_unet():
    """A random UNet2DConditionModel for 3x8x8 samples, cross-attending to (N, seq, 8) embeddings."""
    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4, cross_attention_dim=8, attention_head_dim=4).eval()


def save_pipeline(path, pipeline_cls, scheduler, **config):
    pipe = pipeline_cls(unet=tiny_unet(**config), scheduler=scheduler)
    pipe.save_pretrained(path)
    return pipe


def job(tmp_path, folder, sampler, **model):
    return validate_config({
        "run": {"num_samples": 3, "seed": 4, "shard_size": 3, "batch_size": 3, "output": str(tmp_path / "out")},
        "model": {"diffusers": {"path": str(folder), "subfolder": "unet"}, "shape": [3, 8, 8], **model},
        "sampler": sampler,
    })


def pipeline_with_our_noise(pipe, module, monkeypatch, seed, n, **call):
    """pipe(...) as a (n, 3, H, W) tensor in [-1, 1] (before diffusers' final /2 + 0.5 clamp), from seedshard's
    start noise of indices 0..n-1."""
    start = samplers.SampleNoise(seed, 0, n).start((3, 8, 8), torch.float32)
    monkeypatch.setattr(f"diffusers.pipelines.{module}.randn_tensor", lambda shape, **_: start.clone())
    images = pipe(batch_size=n, output_type="np", **call).images  # (n, H, W, C) in [0, 1]
    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2) * 2 - 1


@pytest.mark.parametrize("prediction_type,interface", [("epsilon", "vp_eps"), ("v_prediction", "vp_v"),
                                                       ("sample", "vp_x0")])
def test_interface_and_grid_follow_the_scheduler(tmp_path, prediction_type, interface):
    save_pipeline(tmp_path, diffusers.DDIMPipeline, diffusers.DDIMScheduler(prediction_type=prediction_type))
    cfg = job(tmp_path, tmp_path, {"name": "ddim", "steps": 5, "time_dist": "diffusers"})
    assert cfg.model.factory == FACTORY and cfg.model.interface == interface
    assert cfg.model.kwargs == {"path": str(tmp_path), "subfolder": "unet"}
    assert cfg.model.interface_kwargs["clip_sample"] is True and cfg.model.interface_kwargs["start_noise"] == "vp"
    assert cfg.sampler.time_kwargs["scheduler_config"]["_class_name"] == "DDIMScheduler"
    # The resolved config names everything: validating it again reads nothing (workers, manifests).
    (tmp_path / "unet").rename(tmp_path / "moved")
    (tmp_path / "scheduler" / "scheduler_config.json").unlink()
    assert validate_config(cfg.resolved()) == cfg


def test_ddim_job_equals_ddim_pipeline(tmp_path, monkeypatch):
    """DDIM's defaults (clip_sample=True, leading spacing, eta 0) on images in [-1, 1]: max |job - DDIMPipeline|
    measured 1.3e-4 with float32 integrator state (in sigma coordinates it reaches ~600, ulp 6e-5), 3.8e-5 with
    float64; diffusers' own float32 and float64 runs differ by 4.4e-5."""
    pipe = save_pipeline(tmp_path, diffusers.DDIMPipeline, diffusers.DDIMScheduler())
    reference = pipeline_with_our_noise(pipe, "ddim.pipeline_ddim", monkeypatch, 4, 3, num_inference_steps=10, eta=0.0)
    for dtype, bound in (("float32", 3e-4), ("float64", 1e-4)):
        cfg = job(tmp_path, tmp_path, {"name": "ddim", "steps": 10, "time_dist": "diffusers", "dtype": dtype})
        err = (SamplingHandle.from_config(cfg).sample(3).clamp(-1, 1) - reference).abs().max().item()
        assert err <= bound, (dtype, err)


@pytest.mark.parametrize("scheduler,sampler", [("DPMSolverMultistepScheduler", "dpmpp_2m"),
                                               ("EulerDiscreteScheduler", "euler")])
def test_multistep_and_euler_jobs_equal_diffusers(tmp_path, monkeypatch, scheduler, sampler):
    """DPM-Solver++(2M) against DDPMPipeline running the folder's scheduler (init_noise_sigma 1, no input scaling);
    Euler against the Stable Diffusion loop (x_T * init_noise_sigma, scale_model_input). Measured max |difference| /
    max |diffusers|: 1.9e-5 (DPM, images in [-1, 1]; float32 states ~600 in sigma coordinates) and 1.5e-7 (Euler)."""
    pipe = save_pipeline(tmp_path, diffusers.DDPMPipeline, getattr(diffusers, scheduler)())
    cfg = job(tmp_path, tmp_path, {"name": sampler, "steps": 8, "time_dist": "diffusers"})
    ours = SamplingHandle.from_config(cfg).sample(3)
    if sampler == "dpmpp_2m":
        reference = pipeline_with_our_noise(pipe, "ddpm.pipeline_ddpm", monkeypatch, 4, 3, num_inference_steps=8)
        ours = ours.clamp(-1, 1)
    else:
        x = samplers.SampleNoise(4, 0, 3).start((3, 8, 8), torch.float32) * pipe.scheduler.init_noise_sigma
        pipe.scheduler.set_timesteps(8)
        for t in pipe.scheduler.timesteps:
            out = pipe.unet(pipe.scheduler.scale_model_input(x, t), t).sample
            x = pipe.scheduler.step(out, t, x).prev_sample
        reference = x
    err = (ours - reference).abs().max().item() / reference.abs().max().item()
    assert err <= 1e-4, err


def test_explicit_interface_is_kept_and_a_bad_folder_is_one_line(tmp_path):
    save_pipeline(tmp_path, diffusers.DDIMPipeline, diffusers.DDIMScheduler())
    cfg = job(tmp_path, tmp_path, {"name": "heun", "steps": 4, "time_dist": "karras",
                                   "time_kwargs": {"sigma_min": 0.01, "sigma_max": 80.0}}, interface="vp_eps")
    assert cfg.model.interface == "vp_eps" and cfg.model.interface_kwargs == {}
    with pytest.raises(ConfigError, match=r"cannot read the scheduler config '.*nowhere/scheduler/scheduler_config"):
        job(tmp_path, tmp_path / "nowhere", {"name": "ddim", "steps": 4, "time_dist": "diffusers"})
    bad = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps({**bad, "_class_name": "PNDMScheduler"}))
    with pytest.raises(ConfigError, match=r"_class_name 'PNDMScheduler' is not reproduced"):
        job(tmp_path, tmp_path, {"name": "ddim", "steps": 4, "time_dist": "diffusers"})


def test_a_remote_folder_is_copied_once_and_loads_the_same_model(tmp_path, monkeypatch):
    import fsspec

    save_pipeline(tmp_path / "pipe", diffusers.DDIMPipeline, diffusers.DDIMScheduler())
    fs = fsspec.filesystem("memory")
    fs.put(str(tmp_path / "pipe") + "/", "/remote-pipe", recursive=True)
    monkeypatch.setenv("SEEDSHARD_CACHE", str(tmp_path / "cache"))
    local = job(tmp_path, tmp_path / "pipe", {"name": "ddim", "steps": 4, "time_dist": "diffusers"})
    remote = job(tmp_path, "memory://remote-pipe", {"name": "ddim", "steps": 4, "time_dist": "diffusers"})
    assert remote.sampler.time_kwargs == local.sampler.time_kwargs
    assert torch.equal(SamplingHandle.from_config(remote).sample(3), SamplingHandle.from_config(local).sample(3))
    assert len(list((tmp_path / "cache" / "seedshard-diffusers").iterdir())) == 1


def _no_constants(name):
    raise ValueError(f"{name} is not JSON (RFC 8259)")


@pytest.mark.slow
def test_ray_job_stores_the_handles_samples_and_hashes_the_folders_weights(ray_local, tmp_path):
    """DPMSolverMultistepScheduler's config holds lambda_min_clipped = -inf: the manifest stays strict JSON, and
    the output verifies and resumes (nothing to redo) with the same sampler state."""
    from pipeline.run.driver import run_job
    from pipeline.network import state_dict_sha256
    from pipeline.output.reader import read_samples
    from pipeline.output.verify import verify_output

    pipe = save_pipeline(tmp_path, diffusers.DDPMPipeline, diffusers.DPMSolverMultistepScheduler())
    cfg = job(tmp_path, tmp_path, {"name": "dpmpp_2m", "steps": 4, "time_dist": "diffusers"})
    manifest = run_job(cfg)
    assert manifest.status == "complete"
    assert manifest.model["sha256"] == state_dict_sha256({f"model.{k}": v for k, v in pipe.unet.state_dict().items()})
    stored = torch.as_tensor(read_samples(cfg.run.output))  # the actor runs 1 thread: float tolerance, not bits
    ours = SamplingHandle.from_config(cfg).sample(3)  # untrained: DPM's states reach ~300
    assert torch.allclose(stored, ours, rtol=0, atol=1e-5 * max(1.0, ours.abs().max().item()))
    text = (tmp_path / "out" / "__seedshard__" / "manifest.json").read_text()
    json.loads(text, parse_constant=_no_constants)
    assert '{"$float": "-Infinity"}' in text.replace("\n", "").replace("  ", "")
    assert verify_output(cfg.run.output) == []
    again = run_job(cfg)
    assert again.status == "complete" and again.shards == manifest.shards and again.fingerprint == manifest.fingerprint


def test_classifier_free_guidance_with_negative_embeddings_equals_stable_diffusions_loop(tmp_path):
    """A UNet2DConditionModel with per-row prompt and negative embeddings from a table and guidance_scale 5 equals
    the Stable Diffusion pipeline's loop: the batch doubled, eps = uncond + w (text - uncond), Euler steps."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    unet = tiny_cond_unet()
    unet.save_pretrained(tmp_path / "unet")
    scheduler = diffusers.EulerDiscreteScheduler()
    scheduler.save_pretrained(tmp_path / "scheduler")
    rng = np.random.default_rng(1)
    emb, neg = (rng.standard_normal((3, 3, 8)).astype(np.float32) for _ in range(2))
    pq.write_table(pa.table({"emb": pa.FixedShapeTensorArray.from_numpy_ndarray(emb),
                             "neg": pa.FixedShapeTensorArray.from_numpy_ndarray(neg)}), tmp_path / "emb.parquet")
    cfg = validate_config({
        "run": {"num_samples": 3, "seed": 4, "shard_size": 3, "batch_size": 2, "output": str(tmp_path / "out")},
        "model": {"diffusers": {"path": str(tmp_path), "subfolder": "unet"}, "shape": [3, 8, 8]},
        "sampler": {"name": "euler", "steps": 5, "time_dist": "diffusers", "guidance_scale": 5.0},
        "conditioning": {"table": str(tmp_path / "emb.parquet"), "columns": {"encoder_hidden_states": "emb"},
                         "negative_columns": {"encoder_hidden_states": "neg"}},
    })
    ours = SamplingHandle.from_config(cfg).sample(3)
    x = samplers.SampleNoise(4, 0, 3).start((3, 8, 8), torch.float32) * scheduler.init_noise_sigma
    scheduler.set_timesteps(5)
    context = torch.from_numpy(np.concatenate([neg, emb]))
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(scheduler.scale_model_input(torch.cat([x, x]), t), t, encoder_hidden_states=context).sample
            uncond, text = out.chunk(2)
            x = scheduler.step(uncond + 5.0 * (text - uncond), t, x).prev_sample
    err = (ours - x).abs().max().item() / x.abs().max().item()
    assert err <= 1e-4, err


def test_conditional_unet_takes_its_embeddings_from_a_conditioning_table(tmp_path):
    """A UNet2DConditionModel folder with encoder_hidden_states (N, 3, 8) per index from a Parquet table equals
    Stable Diffusion's Euler loop with the same embeddings (measured 1.8e-7 relative)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    unet = tiny_cond_unet()
    unet.save_pretrained(tmp_path / "unet")
    scheduler = diffusers.EulerDiscreteScheduler()
    scheduler.save_pretrained(tmp_path / "scheduler")
    emb = np.random.default_rng(1).standard_normal((3, 3, 8)).astype(np.float32)
    pq.write_table(pa.table({"emb": pa.FixedShapeTensorArray.from_numpy_ndarray(emb)}), tmp_path / "emb.parquet")
    cfg = validate_config({
        "run": {"num_samples": 3, "seed": 4, "shard_size": 3, "batch_size": 2, "output": str(tmp_path / "out")},
        "model": {"diffusers": {"path": str(tmp_path), "subfolder": "unet"}, "shape": [3, 8, 8]},
        "sampler": {"name": "euler", "steps": 5, "time_dist": "diffusers"},
        "conditioning": {"table": str(tmp_path / "emb.parquet"), "columns": {"encoder_hidden_states": "emb"}},
    })
    ours = SamplingHandle.from_config(cfg).sample(3)
    x = samplers.SampleNoise(4, 0, 3).start((3, 8, 8), torch.float32) * scheduler.init_noise_sigma
    scheduler.set_timesteps(5)
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(scheduler.scale_model_input(x, t), t, encoder_hidden_states=torch.from_numpy(emb)).sample
            x = scheduler.step(out, t, x).prev_sample
    assert (ours - x).abs().max() <= 1e-5 * x.abs().max()


def test_flow_matching_transformer_equals_the_sd3_loop(tmp_path):
    """An SD3Transformer2DModel folder with FlowMatchEulerDiscreteScheduler(shift=3) runs on the `flow` interface at
    timestep = t * 1000; prompt embeddings come from a conditioning table. Equals SD3's loop (measured 0)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    torch.manual_seed(0)
    transformer = diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=8, out_channels=4,
        pos_embed_max_size=16).eval()
    transformer.save_pretrained(tmp_path / "transformer")
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.save_pretrained(tmp_path / "scheduler")
    rng = np.random.default_rng(2)
    prompt, pooled = rng.standard_normal((3, 5, 16)).astype(np.float32), rng.standard_normal((3, 8)).astype(np.float32)
    pq.write_table(pa.table({"prompt": pa.FixedShapeTensorArray.from_numpy_ndarray(prompt), "pooled": list(pooled)}),
                   tmp_path / "prompts.parquet")
    cfg = validate_config({
        "run": {"num_samples": 3, "seed": 4, "shard_size": 3, "batch_size": 3, "output": str(tmp_path / "out")},
        "model": {"diffusers": {"path": str(tmp_path), "subfolder": "transformer"}, "shape": [4, 8, 8]},
        "sampler": {"name": "euler", "steps": 4, "time_dist": "diffusers"},
        "conditioning": {"table": str(tmp_path / "prompts.parquet"),
                         "columns": {"encoder_hidden_states": "prompt", "pooled_projections": "pooled"}},
    })
    assert cfg.model.interface == "flow" and cfg.model.kwargs["timestep_scale"] == 1000.0
    ours = SamplingHandle.from_config(cfg).sample(3)
    x = samplers.SampleNoise(4, 0, 3).start((4, 8, 8), torch.float32)
    scheduler.set_timesteps(4)
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = transformer(hidden_states=x, timestep=t.expand(3), encoder_hidden_states=torch.from_numpy(prompt),
                              pooled_projections=torch.from_numpy(pooled)).sample
            x = scheduler.step(out, t, x).prev_sample
    assert (ours - x).abs().max() <= 1e-5 * x.abs().max()


def test_ddpm_job_equals_ddpm_pipeline_with_its_noise_injected(tmp_path, monkeypatch):
    """DDPMScheduler (clip_sample=True) is ddim with eta 1 and the re-derived eps, filled in from the scheduler; with
    seedshard's start and step noise injected into diffusers, the job equals DDPMPipeline (measured 1.3e-6 on images
    in [-1, 1])."""
    pipe = save_pipeline(tmp_path, diffusers.DDPMPipeline, diffusers.DDPMScheduler())
    cfg = job(tmp_path, tmp_path, {"name": "ddim", "steps": 8, "time_dist": "diffusers"})
    assert cfg.sampler.kwargs == {"eta": 1.0, "use_clipped_model_output": True}
    ours = SamplingHandle.from_config(cfg).sample(3).clamp(-1, 1)
    noise, draws = samplers.SampleNoise(4, 0, 3), iter(range(8))
    monkeypatch.setattr("diffusers.schedulers.scheduling_ddpm.randn_tensor",
                        lambda shape, **_: noise.step(next(draws), torch.empty(shape)))
    reference = pipeline_with_our_noise(pipe, "ddpm.pipeline_ddpm", monkeypatch, 4, 3, num_inference_steps=8)
    err = (ours - reference).abs().max().item()
    assert err <= 1e-4, err


@pytest.mark.parametrize("guide_scheduler", [True, False])
def test_guide_from_a_diffusers_folder_equals_the_guided_field(tmp_path, guide_scheduler):
    """Autoguidance by a second UNet2DModel folder: the job (prepare + the worker's code, no Ray) stores what
    sampler.sample with both fields (a GuidedField inside) computes in this process for the same indices. A guide
    folder without a scheduler config (a bare model folder) takes the model's interface."""
    from pipeline.models.diffusers_folder import load
    from pipeline.network import module_sha256
    from pipeline.output.reader import read_samples
    from pipeline.run.sampling import build_sampler
    from tests.pipeline.jobs import run_in_process

    save_pipeline(tmp_path / "main", diffusers.DDIMPipeline, diffusers.DDIMScheduler())
    torch.manual_seed(1)
    guide_unet = diffusers.UNet2DModel(**{**UNET, "block_out_channels": (4, 8), "norm_num_groups": 2})
    if guide_scheduler:
        diffusers.DDIMPipeline(unet=guide_unet, scheduler=diffusers.DDIMScheduler()).save_pretrained(tmp_path / "guide")
        guide = {"diffusers": {"path": str(tmp_path / "guide"), "subfolder": "unet"}, "shape": [3, 8, 8]}
    else:
        guide_unet.save_pretrained(tmp_path / "guide")
        guide = {"diffusers": {"path": str(tmp_path / "guide")}, "shape": [3, 8, 8]}
    cfg = job(tmp_path, tmp_path / "main", {"name": "ddim", "steps": 4, "time_dist": "diffusers", "guidance_scale": 2.0},
              guide=guide)
    assert cfg.model.guide.factory == FACTORY and cfg.model.guide.interface == "vp_eps"
    assert cfg.model.guide.interface_kwargs == cfg.model.interface_kwargs
    manifest = run_in_process(cfg)
    g_net = load(**cfg.model.guide.kwargs)
    assert manifest.model["guide"]["sha256"] == module_sha256(g_net)  # the guide's identity is in the fingerprint

    def field(model_cfg, net):
        return samplers.wrap(net, model_cfg.interface, **model_cfg.interface_kwargs)

    with torch.inference_mode():
        expected = build_sampler(cfg).sample(3, "cpu", net=field(cfg.model, load(**cfg.model.kwargs)), shape=(3, 8, 8),
                                             seed=4, g_net=field(cfg.model.guide, g_net), guidance_scale=2.0)
        unguided = build_sampler(cfg).sample(3, "cpu", net=field(cfg.model, load(**cfg.model.kwargs)), shape=(3, 8, 8),
                                             seed=4)
    stored = torch.from_numpy(read_samples(cfg.run.output))
    torch.testing.assert_close(stored, expected, rtol=0, atol=1e-6)  # same batch, same threads: the same computation
    assert (stored - unguided).abs().max() > 1e-2  # the guide took part


def test_a_folder_whose_model_config_changes_in_place_is_another_job(tmp_path):
    """config.json holds settings no weight shows (act_fn, norm_eps, ...): edited in place under the same path, the
    samples change, so the fingerprint must too, or a resume keeps the old network's shards beside the new one's
    (seen on a real job: `1 kept, 1 regenerated` and verify OK)."""
    from tests.pipeline.jobs import job_identity

    save_pipeline(tmp_path / "pipe", diffusers.DDIMPipeline, diffusers.DDIMScheduler())
    cfg = job(tmp_path, tmp_path / "pipe", {"name": "ddim", "steps": 3, "time_dist": "diffusers"})
    before, fingerprint = SamplingHandle.from_config(cfg).sample(3), job_identity(cfg)[3]
    config = tmp_path / "pipe" / "unet" / "config.json"
    config.write_text(config.read_text().replace('"act_fn": "silu"', '"act_fn": "mish"'))
    assert not torch.equal(SamplingHandle.from_config(cfg).sample(3), before)
    assert job_identity(cfg)[3] != fingerprint
