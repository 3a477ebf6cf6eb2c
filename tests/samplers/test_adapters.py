"""Adapters: each field equals the same quantity computed by hand from the wrapped model."""

import math

import numpy as np
import pytest
import torch

import samplers
from samplers.interfaces import ddpm_alphas_cumprod, edm_precond
from tests.samplers.sampler_checks import assert_rows_independent_of_batch, assert_save_load_bitwise

SIGMAS = [0.05, 1.0, 14.6]


# -- diffusers UNet2DModel (epsilon prediction) through vp_eps ----------------------------------------------
def _tiny_unet(num_class_embeds=None, out_channels=2):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=2, out_channels=out_channels, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=4, num_class_embeds=num_class_embeds,
    )
    return unet.eval().requires_grad_(False)


def _hand_timestep(sigma, num_train_timesteps, beta_start, beta_end, beta_schedule):
    """DDPM's abar (Ho et al. 2020) -> sigma_i = sqrt((1 - abar_i) / abar_i); interpolate log sigma -> timestep."""
    if beta_schedule == "linear":
        betas = np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)
    else:  # scaled_linear
        betas = np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=np.float64) ** 2
    abar = np.cumprod(1 - betas)
    return float(np.interp(math.log(sigma), 0.5 * np.log((1 - abar) / abar), np.arange(num_train_timesteps)))


@pytest.mark.parametrize("schedule", [
    dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear"),
    dict(num_train_timesteps=500, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"),
])
def test_diffusers_unet_field_is_the_unet_by_hand(schedule):
    diffusers = pytest.importorskip("diffusers")
    from samplers.adapters.diffusers import wrap_diffusers_unet

    unet = _tiny_unet()
    scheduler = diffusers.DDPMScheduler(**schedule)
    net = wrap_diffusers_unet(unet, scheduler)
    assert net.interface == "vp_eps"
    # The schedule is the scheduler's (diffusers keeps it in float32; ours is float64 from the same config).
    abar = 1 / (1 + np.exp(2 * net.log_sigmas))
    assert np.allclose(abar, scheduler.alphas_cumprod.double().numpy(), rtol=1e-6, atol=0)
    x = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    for sigma in SIGMAS:
        if sigma > net.sigma_max:
            continue
        ts = torch.full((3,), _hand_timestep(sigma, **schedule))
        eps = unet(x / math.sqrt(1 + sigma**2), ts).sample
        assert torch.allclose(net.eps(x, sigma), eps, rtol=1e-5, atol=1e-6)
        assert torch.allclose(net.denoise(x, sigma), x - sigma * eps, rtol=1e-5, atol=1e-5)


def test_diffusers_unet_class_labels_and_learned_variance():
    pytest.importorskip("diffusers")
    from samplers.adapters.diffusers import wrap_diffusers_unet

    unet = _tiny_unet(num_class_embeds=3, out_channels=4)  # [eps, variance] channels, as "learned_range" models
    net = wrap_diffusers_unet(unet, {"num_train_timesteps": 1000, "variance_type": "learned_range"})
    x, labels, sigma = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 2]), 2.0
    ts = torch.full((2,), _hand_timestep(sigma, 1000, 1e-4, 0.02, "linear"))
    eps = unet(x / math.sqrt(1 + sigma**2), ts, class_labels=labels).sample[:, :2]
    assert torch.allclose(net.eps(x, sigma, class_labels=labels), eps, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(net.eps(x, sigma, class_labels=labels), net.eps(x, sigma, class_labels=labels.flip(0)))


def test_diffusers_unet_samples_end_to_end_with_labels():
    pytest.importorskip("diffusers")
    from samplers.adapters.diffusers import wrap_diffusers_unet

    net = wrap_diffusers_unet(_tiny_unet(num_class_embeds=3))  # no scheduler: DDPM's defaults
    sampler = samplers.build("dpmpp_2m", steps=4, time_dist="karras",
                             time_kwargs={"sigma_min": net.sigma_min, "sigma_max": net.sigma_max})
    labels = torch.tensor([0, 1, 2])
    x = sampler.sample(3, "cpu", net=net, shape=(2, 8, 8), seed=0, labels=labels)
    assert x.shape == (3, 2, 8, 8) and torch.isfinite(x).all()
    assert torch.equal(x, samplers.from_state(sampler.save()).sample(3, "cpu", net=net, shape=(2, 8, 8), seed=0,
                                                                     labels=labels))


def test_diffusers_schedule_errors_and_cosine_table():
    diffusers = pytest.importorskip("diffusers")
    from samplers.adapters.diffusers import ddpm_schedule

    with pytest.raises(ValueError, match="rescale_betas_zero_snr=True gives abar = 0"):
        ddpm_schedule({"rescale_betas_zero_snr": True})
    with pytest.raises(TypeError, match="scheduler must be"):
        ddpm_schedule(42)
    assert np.allclose(ddpm_schedule({"trained_betas": [0.1, 0.2]}), [0.9, 0.72])
    # squaredcos_cap_v2 (Nichol & Dhariwal 2021) from the config alone: diffusers' float32 table bit for bit with
    # table_dtype="float32"; in float64 within float32 rounding (abar_999 = 2.4e-9 carries 1.3e-5 of it).
    cosine = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.double().numpy()
    assert np.array_equal(ddpm_alphas_cumprod(beta_schedule="squaredcos_cap_v2", table_dtype="float32"), cosine)
    assert np.allclose(ddpm_schedule({"beta_schedule": "squaredcos_cap_v2"}), cosine, rtol=2e-5, atol=0)


@pytest.mark.parametrize("prediction_type,interface", [("v_prediction", "vp_v"), ("sample", "vp_x0")])
def test_diffusers_unet_prediction_type_picks_the_interface(prediction_type, interface):
    diffusers = pytest.importorskip("diffusers")
    from samplers.adapters.diffusers import wrap_diffusers_unet

    unet = _tiny_unet()
    net = wrap_diffusers_unet(unet, diffusers.DDIMScheduler(prediction_type=prediction_type))
    assert net.interface == interface and not net.clips  # the model's field: no sampling options
    x, sigma = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(5)), 3.0
    out = unet(x / math.sqrt(1 + sigma**2), torch.full((2,), net.timestep(sigma))).sample
    x0 = x / (1 + sigma**2) - sigma / math.sqrt(1 + sigma**2) * out if interface == "vp_v" else out
    assert torch.allclose(net.denoise(x, sigma), x0, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="prediction_type 'flow_prediction' is not a DDPM prediction"):
        wrap_diffusers_unet(unet, {"prediction_type": "flow_prediction"})


# -- a k-diffusion style denoiser model(x, sigma, **kw) through edm -----------------------------------------
class _KDenoiser(torch.nn.Module):
    """A k-diffusion style denoiser D(x, sigma, **kw): sigma is a (N,) tensor, extra conditioning by keyword."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x, sigma, cond=None):
        out = self.conv(x) * torch.tanh(sigma)[:, None, None, None] + x / (1 + sigma[:, None, None, None] ** 2)
        return out if cond is None else out + cond[:, None, None, None]


@pytest.mark.parametrize("sigma", SIGMAS)
def test_k_diffusion_denoiser_through_edm(sigma):
    model = _KDenoiser().requires_grad_(False)
    net = samplers.wrap(model, "edm")  # precond=False: the model already is D(x, sigma)
    x, cond = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(3)), torch.tensor([0.0, 1.0, -1.0])
    D = model(x, torch.full((3,), sigma), cond=cond)
    assert torch.equal(net.denoise(x, sigma, cond=cond), D)
    assert torch.allclose(net.velocity(x, sigma, cond=cond), (x - D) / sigma)
    assert torch.allclose(net.score(x, sigma, cond=cond), (D - x) / sigma**2, rtol=1e-5)


# -- EDM preconditioning of a raw network (Karras et al. 2022, Table 1) --------------------------------------
@pytest.mark.parametrize("sigma", SIGMAS)
def test_edm_preconditioning_by_hand(sigma):
    raw = _KDenoiser().requires_grad_(False)  # any raw network F(x, c_noise)
    net = samplers.wrap(raw, "edm", precond=True, sigma_data=0.5)
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(4))
    sd = 0.5
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / math.sqrt(sigma**2 + sd**2)
    c_in = 1 / math.sqrt(sigma**2 + sd**2)
    c_noise = math.log(sigma) / 4
    assert edm_precond(sigma, sd) == pytest.approx((c_skip, c_out, c_in, c_noise), rel=1e-15)
    D = c_skip * x + c_out * raw(c_in * x, torch.full((3,), c_noise))
    assert torch.allclose(net.denoise(x, sigma), D, rtol=1e-6, atol=1e-6)
    assert torch.allclose(net.velocity(x, sigma), (x - D) / sigma, rtol=1e-5, atol=1e-5)


def test_adapted_fields_sample_reproducibly():
    net = samplers.wrap(_KDenoiser().requires_grad_(False), "edm", precond=True)
    sampler = samplers.build("edm_stochastic", steps=5, time_dist="karras", S_churn=10.0)
    assert_save_load_bitwise(sampler, net, shape=(2, 4, 4))
    assert_rows_independent_of_batch(sampler, net, shape=(2, 4, 4))
