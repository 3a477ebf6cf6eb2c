"""diffusers schedulers reproduced: grids equal diffusers' own, and a seedshard sampler from `diffusers_settings`
equals the scheduler's loop on a tiny random UNet2DModel from the same start noise."""

import json

import numpy as np
import pytest
import torch

import samplers
from samplers.adapters.diffusers import DiffusersNet
from samplers.adapters.diffusers_schedule import diffusers_grid, diffusers_settings, scheduler_config
from samplers.schedules import resolve_time_kwargs, time_grid

diffusers = pytest.importorskip("diffusers")

SD = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)  # Stable Diffusion's table
GRID_CASES = [
    ("DDIMScheduler", {}), ("DDIMScheduler", dict(steps_offset=1, **SD)), ("DDIMScheduler", dict(timestep_spacing="trailing")),
    ("DDIMScheduler", dict(beta_schedule="squaredcos_cap_v2")),
    ("DDPMScheduler", {}), ("DDPMScheduler", dict(timestep_spacing="linspace")),
    ("DDPMScheduler", dict(timestep_spacing="trailing", trained_betas=np.linspace(1e-4, 0.03, 1000).tolist())),
    ("EulerDiscreteScheduler", {}), ("EulerDiscreteScheduler", dict(timestep_spacing="leading", steps_offset=1, **SD)),
    ("EulerDiscreteScheduler", dict(timestep_spacing="trailing")), ("EulerDiscreteScheduler", dict(use_karras_sigmas=True)),
    ("EulerDiscreteScheduler", dict(use_exponential_sigmas=True, beta_schedule="squaredcos_cap_v2")),
    ("EulerDiscreteScheduler", dict(use_karras_sigmas=True, sigma_min=0.1, sigma_max=20.0)),
    ("DPMSolverMultistepScheduler", {}), ("DPMSolverMultistepScheduler", dict(use_karras_sigmas=True, **SD)),
    ("DPMSolverMultistepScheduler", dict(timestep_spacing="leading", steps_offset=1)),
    ("DPMSolverMultistepScheduler", dict(timestep_spacing="trailing", use_exponential_sigmas=True)),
    ("DPMSolverMultistepScheduler", dict(beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-5.1)),
    ("FlowMatchEulerDiscreteScheduler", {}), ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0)),
    ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0, shift_terminal=0.1)),
]


def _reference_grid(scheduler, steps):
    """The scheduler's own times for `steps`: its sigmas, or (DDIM/DDPM) the sigmas of its timesteps, then 0."""
    scheduler.set_timesteps(steps)
    if isinstance(scheduler, (diffusers.DDIMScheduler, diffusers.DDPMScheduler)):
        abar = scheduler.alphas_cumprod.double()[scheduler.timesteps]
        return torch.cat([((1 - abar) / abar).sqrt(), torch.zeros(1, dtype=torch.float64)])
    return scheduler.sigmas.double()


@pytest.mark.parametrize("name,config", GRID_CASES)
@pytest.mark.parametrize("steps", [1, 10, 25])
def test_grid_is_the_schedulers_own(name, config, steps):
    scheduler = getattr(diffusers, name)(**config)
    if steps == 1 and config.get("shift_terminal"):  # diffusers' own grid is [nan, 0]
        with pytest.raises(ValueError, match=r"grid for steps=1 is not strictly decreasing: \[nan, 0.0\]"):
            time_grid("diffusers", steps, scheduler_config=scheduler)
        return
    grid = time_grid("diffusers", steps, scheduler_config=scheduler)
    reference = _reference_grid(scheduler, steps)
    # Euler, DPM-Solver and flow keep float32 sigmas: bit for bit. DDIM/DDPM keep abar; sigma is ours, in float64.
    assert grid.dtype == torch.float64 and grid.shape == reference.shape == (steps + 1,)
    assert torch.allclose(grid, reference, rtol=1e-15, atol=0), (grid, reference)


def test_config_from_a_saved_folder_keeps_only_what_the_scheduler_reads(tmp_path):
    scheduler = diffusers.EulerDiscreteScheduler(use_karras_sigmas=True, **SD)
    scheduler.save_pretrained(tmp_path / "pipe" / "scheduler")
    cfg = scheduler_config(scheduler)
    for where in (tmp_path / "pipe", tmp_path / "pipe" / "scheduler", tmp_path / "pipe" / "scheduler" / "scheduler_config.json"):
        assert scheduler_config(where) == scheduler_config(str(where)) == cfg
    # A config may carry keys of other schedulers (Stable Diffusion's Euler config has clip_sample): ignored.
    assert scheduler_config({**cfg, "clip_sample": True, "skip_prk_steps": True}) == cfg
    # Missing keys take diffusers' defaults, so the stored config is the effective one, as plain JSON.
    assert scheduler_config({"_class_name": "DDIMScheduler"}) == scheduler_config(diffusers.DDIMScheduler())
    assert json.loads(json.dumps(cfg)) == cfg and cfg["_class_name"] == "EulerDiscreteScheduler"
    assert resolve_time_kwargs("diffusers", {"scheduler_config": str(tmp_path / "pipe")}) == {"scheduler_config": cfg}


@pytest.mark.parametrize("config,match", [
    ({"_class_name": "PNDMScheduler"}, r"_class_name 'PNDMScheduler' is not reproduced; allowed: DDIMScheduler, "),
    ({}, "_class_name None is not reproduced"),
    ({"_class_name": "DDIMScheduler", "rescale_betas_zero_snr": True}, "rescale_betas_zero_snr=True is not reproduced"),
    ({"_class_name": "DDIMScheduler", "prediction_type": "flow_prediction"}, "prediction_type='flow_prediction'"),
    ({"_class_name": "DDPMScheduler", "variance_type": "fixed_large"}, "variance_type='fixed_large'.*'fixed_small'"),
    ({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3}, "solver_order=3 is not reproduced by seedshard; allowed: 2"),
    ({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++"}, "algorithm_type"),
    ({"_class_name": "EulerDiscreteScheduler", "interpolation_type": "log_linear"}, "interpolation_type"),
    ({"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": True}, "use_dynamic_shifting=True"),
])
def test_unreproduced_configs_are_one_line_errors(config, match):
    with pytest.raises(ValueError, match=match):
        scheduler_config(config)


def test_scheduler_config_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="no such file, nor a folder with scheduler_config.json"):
        scheduler_config(str(tmp_path / "missing"))
    with pytest.raises(TypeError, match="scheduler must be a diffusers scheduler, its config dict or a path"):
        scheduler_config(42)


def test_ddim_grid_that_diffusers_steps_off_is_refused():
    # linspace, 50 steps: timesteps 999, 979, 958, ... but each DDIM step goes from t to t - 20.
    with pytest.raises(ValueError, match=r"steps from timestep t to t - 20 but evaluates the next step elsewhere"):
        diffusers_grid({"_class_name": "DDIMScheduler", "timestep_spacing": "linspace"}, 50)
    with pytest.raises(ValueError, match="timesteps outside 0..999"):
        diffusers_grid({"_class_name": "DDIMScheduler", "steps_offset": 1}, 1000)
    with pytest.raises(ValueError, match="steps=1001 exceeds num_train_timesteps=1000"):
        diffusers_grid({"_class_name": "DDPMScheduler"}, 1001)


@pytest.mark.parametrize("name,config,interface,sampler,kwargs", [
    ("DDIMScheduler", {}, "vp_eps", "ddim",
     dict(quantize=True, start_noise="vp", clip_sample=True, thresholding=False, table_dtype="float32")),
    ("DDPMScheduler", dict(prediction_type="v_prediction"), "vp_v", "ddim", dict(start_noise="vp", clip_sample=True)),
    ("EulerDiscreteScheduler", dict(prediction_type="sample"), "vp_x0", "euler",
     dict(quantize=False, sigma_interp="linear", start_noise="sigma")),
    ("EulerDiscreteScheduler", dict(timestep_spacing="leading"), "vp_eps", "euler",
     dict(quantize=True, sigma_interp="log", start_noise="vp")),
    ("EulerDiscreteScheduler", dict(use_karras_sigmas=True), "vp_eps", "euler", dict(quantize=False, sigma_interp="log")),
    ("DPMSolverMultistepScheduler", dict(use_karras_sigmas=True, thresholding=True), "vp_eps", "dpmpp_2m",
     dict(quantize=True, start_noise="vp", thresholding=True)),
    ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0), "flow", "euler", {}),
])
def test_settings_name_interface_sampler_and_grid(name, config, interface, sampler, kwargs):
    s = diffusers_settings(getattr(diffusers, name)(**config))
    assert (s.interface, s.sampler, s.time_dist) == (interface, sampler, "diffusers")
    assert s.interface_kwargs.items() >= kwargs.items()
    assert s.time_kwargs == {"scheduler_config": scheduler_config(getattr(diffusers, name)(**config))}
    assert s.timestep_scale == (1000.0 if interface == "flow" else 1.0)
    assert "clip_sample" not in s.interface_kwargs or name in ("DDIMScheduler", "DDPMScheduler")
    samplers.wrap(lambda x, t: x, s.interface, **s.interface_kwargs)  # the kwargs are the interface's
    assert s.sampler_kwargs == {"DDIMScheduler": {"eta": 0.0}, "DDPMScheduler": {"eta": 1.0, "use_clipped_model_output": True}}.get(name, {})


# -- sampling loops ------------------------------------------------------------------------------------------
def _tiny_unet():
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=4,
    )
    return unet.eval().requires_grad_(False)


def _seedshard_sampler(settings, steps, **step_kwargs):
    """samplers.build(settings.sampler, ...) on the diffusers grid; `step_kwargs` as given to diffusers' DDIM step."""
    return samplers.build(settings.sampler, steps=steps, time_dist=settings.time_dist,
                          time_kwargs=settings.time_kwargs, **{**settings.sampler_kwargs, **step_kwargs})


def _diffusers_loop(model, scheduler, steps, x_T, noise, **step_kwargs):
    """diffusers' pipeline loop (DDIMPipeline / DDPMPipeline / StableDiffusion's / SD3's), step k's noise injected."""
    scheduler.set_timesteps(steps)
    flow = isinstance(scheduler, diffusers.FlowMatchEulerDiscreteScheduler)  # no init_noise_sigma, no input scaling
    x = x_T if flow else x_T * scheduler.init_noise_sigma
    for k, t in enumerate(scheduler.timesteps):
        out = model(x if flow else scheduler.scale_model_input(x, t), t).sample
        if isinstance(scheduler, diffusers.DDIMScheduler) and step_kwargs.get("eta", 0) > 0:
            step_kwargs["variance_noise"] = noise.step(k, x)
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    return x


LOOP_CASES = [
    ("DDIMScheduler", dict(clip_sample=False), {}),
    ("DDIMScheduler", dict(clip_sample=True), dict(use_clipped_model_output=True)),
    ("DDIMScheduler", dict(clip_sample=False, prediction_type="v_prediction"), {}),
    ("DDIMScheduler", dict(clip_sample=False, prediction_type="sample", steps_offset=1), {}),
    ("DDIMScheduler", dict(thresholding=True, sample_max_value=1.5), dict(use_clipped_model_output=True)),
    ("EulerDiscreteScheduler", {}, {}),
    ("EulerDiscreteScheduler", dict(timestep_spacing="leading", steps_offset=1, **SD), {}),
    ("EulerDiscreteScheduler", dict(use_karras_sigmas=True, prediction_type="v_prediction"), {}),
    ("EulerDiscreteScheduler", dict(prediction_type="sample", timestep_spacing="trailing"), {}),
    ("DPMSolverMultistepScheduler", {}, {}),
    ("DPMSolverMultistepScheduler", dict(use_karras_sigmas=True, prediction_type="v_prediction"), {}),
    ("DPMSolverMultistepScheduler", dict(thresholding=True, sample_max_value=1.5, prediction_type="sample"), {}),
    ("DDPMScheduler", dict(clip_sample=False), {}),
    ("DDPMScheduler", dict(prediction_type="v_prediction"), {}),
    ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0), {}),
]


@pytest.mark.parametrize("name,config,step_kwargs", LOOP_CASES)
def test_sampler_equals_the_schedulers_loop(name, config, step_kwargs, monkeypatch):
    """Max |ours - diffusers| <= 2e-5 * max |diffusers| in float32, 10 steps, from the same start noise. Measured
    (diffusers 0.42, torch 2.13 CPU): 0 for flow, 1.5e-7 .. 1.7e-6 for the VP cases, 7.0e-6 with clip_sample (its
    output is clamped to [-1, 1] while the unclipped intermediate states reach ~200 with rounding errors ~1e-5).
    DDPM's per-step noise is injected through diffusers' randn_tensor; it is seedshard's step-k noise."""
    model, steps, noise = _tiny_unet(), 10, samplers.SampleNoise(0, 0, 3)
    x_T = noise.start((2, 8, 8), torch.float32)
    if name == "DDPMScheduler":
        draws = iter(range(steps))
        monkeypatch.setattr("diffusers.schedulers.scheduling_ddpm.randn_tensor",
                            lambda shape, **_: noise.step(next(draws), torch.empty(shape)))
    reference = _diffusers_loop(model, getattr(diffusers, name)(**config), steps, x_T, noise, **step_kwargs)

    settings = diffusers_settings(getattr(diffusers, name)(**config))
    field = samplers.wrap(DiffusersNet(model, settings.timestep_scale), settings.interface, **settings.interface_kwargs)
    sampler = _seedshard_sampler(settings, steps, **step_kwargs)
    ours = sampler.integrate(field, x_T * field.prior_scale(float(sampler.sample_t()[0])), noise=noise)
    scale = reference.abs().max().item()
    assert (ours - reference).abs().max().item() <= 2e-5 * scale, ((ours - reference).abs().max().item(), scale)


def test_ddim_default_clipping_equals_diffusers():
    """DDIM's default clip_sample=True: the clipped x0 paired with the network's raw eps, as diffusers' DDIM steps.
    Measured max |ours - diffusers| = 3.2e-5 on outputs in [-1, 1]; diffusers' own float32 loop differs from its
    float64 run by 2.2e-5 here (the unclipped eps carries the rounding of states ~600 in sigma coordinates)."""
    model, steps, noise = _tiny_unet(), 10, samplers.SampleNoise(0, 0, 3)
    x_T = noise.start((2, 8, 8), torch.float32)
    reference = _diffusers_loop(model, diffusers.DDIMScheduler(), steps, x_T, noise)
    settings = diffusers_settings(diffusers.DDIMScheduler())
    field = samplers.wrap(DiffusersNet(model), settings.interface, **settings.interface_kwargs)
    sampler = _seedshard_sampler(settings, steps)
    ours = sampler.integrate(field, x_T * field.prior_scale(float(sampler.sample_t()[0])))
    assert torch.allclose(ours, reference, rtol=0, atol=1e-4), (ours - reference).abs().max()


@pytest.mark.parametrize("name,config", [("DDIMScheduler", dict(clip_sample=False)),
                                         ("EulerDiscreteScheduler", dict(timestep_spacing="leading")),
                                         ("EulerDiscreteScheduler", {})])
def test_start_noise_is_init_noise_sigma(name, config):
    """`sample` scales its start noise by the field's prior_scale(t_max): diffusers' init_noise_sigma (1 for DDIM,
    sqrt(sigma_max^2 + 1) for Euler 'leading', sigma_max for Euler 'linspace'), seen in sigma coordinates."""
    model, steps = _tiny_unet(), 6
    settings = diffusers_settings(getattr(diffusers, name)(**config))
    field = samplers.wrap(DiffusersNet(model), settings.interface, **settings.interface_kwargs)
    ours = _seedshard_sampler(settings, steps).sample(3, "cpu", net=field, shape=(2, 8, 8), seed=5)
    x_T = samplers.SampleNoise(5, 0, 3).start((2, 8, 8), torch.float32)
    reference = _diffusers_loop(model, getattr(diffusers, name)(**config), steps, x_T, None)
    assert (ours - reference).abs().max() <= 2e-5 * reference.abs().max()


def test_sampler_state_carries_the_scheduler_config():
    settings = diffusers_settings(diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True))
    sampler = samplers.build(settings.sampler, steps=7, time_dist=settings.time_dist, time_kwargs=settings.time_kwargs)
    state = json.loads(json.dumps(sampler.save()))
    assert state["time_kwargs"] == settings.time_kwargs
    assert torch.equal(samplers.from_state(state).sample_t(), sampler.sample_t())
