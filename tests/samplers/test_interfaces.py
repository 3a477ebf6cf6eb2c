import math

import numpy as np
import pytest
import torch

import samplers
from samplers.analytic import GaussianData, GaussianNet
from samplers.interfaces import ddpm_alphas_cumprod, edm_precond, threshold_x0

DATA = GaussianData(0.5, 0.8)
X = torch.randn(6, 4, dtype=torch.float64)


def test_flow_field_quantities_match_closed_forms():
    field, t = samplers.wrap(GaussianNet("flow"), "flow"), 0.4
    std2 = (1 - t) ** 2 * DATA.s**2 + t**2
    m = (1 - t) * DATA.mu
    exact_x0 = DATA.mu + (1 - t) * DATA.s**2 / std2 * (X - m)
    exact_score = -(X - m) / std2
    assert torch.allclose(field.denoise(X, t), exact_x0, atol=1e-12)
    assert torch.allclose(field.score(X, t), exact_score, atol=1e-12)
    beta = field.diffusion(t)
    assert torch.allclose(field.sde_drift(X, t), DATA.flow_velocity(X, t) - 0.5 * beta * exact_score, atol=1e-12)


def test_edm_field_quantities_match_closed_forms():
    field, sigma = samplers.wrap(GaussianNet("edm"), "edm"), 2.0
    D = DATA.denoiser(X, sigma)
    assert torch.allclose(field.velocity(X, sigma), (X - D) / sigma, atol=1e-12)
    assert torch.allclose(field.score(X, sigma), (D - X) / sigma**2, atol=1e-12)
    assert field.prior_scale(80.0) == 80.0 and field.diffusion(3.0) == 6.0
    # The flow and edm fields of the same data give the same score at matching noise levels.
    t = sigma / (1 + sigma)  # x_flow = x_edm / (1 + sigma)
    flow = samplers.wrap(GaussianNet("flow"), "flow")
    assert torch.allclose(flow.score(X / (1 + sigma), t) / (1 + sigma), field.score(X, sigma), atol=1e-12)


def test_edm_preconditioning_by_hand():
    F = lambda x, c_noise: 0.3 * x + c_noise[:, None]  # noqa: E731
    field = samplers.wrap(F, "edm", precond=True, sigma_data=0.5)
    sigma = 1.7
    c_skip, c_out, c_in = 0.25 / (sigma**2 + 0.25), sigma * 0.5 / math.sqrt(sigma**2 + 0.25), 1 / math.sqrt(sigma**2 + 0.25)
    expected = c_skip * X + c_out * (0.3 * c_in * X + math.log(sigma) / 4)
    assert torch.allclose(field.denoise(X, sigma), expected, atol=1e-12)
    assert edm_precond(sigma, 0.5)[3] == math.log(sigma) / 4


def test_vp_eps_field_by_hand():
    seen = {}

    def eps_net(x_vp, timestep):
        seen["x"], seen["t"] = x_vp, timestep
        return 0.1 * x_vp

    field = samplers.wrap(eps_net, "vp_eps")
    abar = ddpm_alphas_cumprod()
    sigma = float(math.sqrt((1 - abar[500]) / abar[500]))
    D = field.denoise(X, sigma)
    assert torch.allclose(seen["t"], torch.full((6,), 500.0, dtype=torch.float64))
    assert torch.allclose(seen["x"], X / math.sqrt(1 + sigma**2))
    assert torch.allclose(D, X - sigma * 0.1 * X / math.sqrt(1 + sigma**2))
    assert math.isclose(field.sigma_max, math.sqrt((1 - abar[-1]) / abar[-1]))


def test_network_dtype_is_cast_and_back():
    seen = []
    field = samplers.wrap(lambda x, t: seen.append((x.dtype, t.dtype)) or x, "flow", dtype=torch.bfloat16)
    out = field.velocity(torch.ones(2, 3), 0.5)
    assert seen == [(torch.bfloat16, torch.bfloat16)] and out.dtype == torch.float32


def test_unknown_interface():
    with pytest.raises(ValueError, match="unknown interface 'eps'; allowed: flow, edm, vp_eps, vp_v, vp_x0, meanflow"):
        samplers.wrap(lambda x, t: x, "eps")


def test_raw_module_and_out_of_range_grid_are_clear_errors():
    sampler = samplers.build("euler", steps=2, time_dist="karras")
    with pytest.raises(TypeError, match=r"net must be a field from samplers.wrap"):
        sampler.integrate(GaussianNet("flow"), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="allows t <= 1"):
        sampler.integrate(samplers.wrap(GaussianNet("flow"), "flow"), torch.zeros(2, 2))


# -- the VP family: vp_eps, vp_v, vp_x0 ----------------------------------------------------------------------
def _eps_net(x_vp, timestep):
    return 0.3 * x_vp + 1e-3 * timestep.view(-1, *[1] * (x_vp.dim() - 1))


def _as(prediction):
    """The same model as _eps_net, predicting v (Salimans & Ho 2022) or x_0 instead of eps, in VP coordinates."""
    def net(x_vp, timestep):
        abar = torch.as_tensor(ddpm_alphas_cumprod(), dtype=x_vp.dtype)[timestep.long()].view(-1, 1)
        eps = _eps_net(x_vp, timestep)
        x0 = (x_vp - (1 - abar).sqrt() * eps) / abar.sqrt()
        return abar.sqrt() * eps - (1 - abar).sqrt() * x0 if prediction == "v" else x0
    return net


@pytest.mark.parametrize("interface,prediction", [("vp_v", "v"), ("vp_x0", "x0")])
def test_vp_v_and_vp_x0_are_the_eps_model_in_other_units(interface, prediction):
    eps_field = samplers.wrap(_eps_net, "vp_eps", quantize=True)
    field = samplers.wrap(_as(prediction), interface, quantize=True)
    abar = ddpm_alphas_cumprod()
    for i in (3, 100, 500, 999):  # training sigmas, where the conversion's abar is the network's
        sigma = math.sqrt((1 - abar[i]) / abar[i])
        for quantity in ("denoise", "velocity", "eps", "score", "sde_drift"):
            ours, reference = getattr(field, quantity)(X, sigma), getattr(eps_field, quantity)(X, sigma)
            assert torch.allclose(ours, reference, rtol=1e-9, atol=1e-9), (quantity, sigma)
    assert field.sigma_max == eps_field.sigma_max and field.prior_scale(3.0) == 3.0


def test_vp_clip_sample_clips_x0_and_rederives_eps():
    field = samplers.wrap(lambda x_vp, ts: torch.zeros_like(x_vp), "vp_eps", clip_sample=True, clip_sample_range=0.5)
    x, sigma = X * 3, 2.0  # eps = 0: the unclipped x_0 is x itself
    assert torch.equal(field.denoise(x, sigma), x.clamp(-0.5, 0.5))
    assert torch.allclose(field.velocity(x, sigma), (x - x.clamp(-0.5, 0.5)) / sigma)
    assert torch.allclose(field.score(x, sigma), -(x - x.clamp(-0.5, 0.5)) / sigma**2)
    # An Euler step to sigma = 0 lands on the clipped x_0, so every integrator sees the clipping.
    assert torch.allclose(x - sigma * field.velocity(x, sigma), x.clamp(-0.5, 0.5), atol=1e-12)


def test_vp_dynamic_thresholding_by_hand():
    x0 = torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    field = samplers.wrap(lambda x_vp, ts: torch.zeros_like(x_vp), "vp_x0", thresholding=True,
                          dynamic_thresholding_ratio=0.9, sample_max_value=1.5)
    field.x0_from = lambda out, x, t: x0  # the network's x_0 prediction, whatever the input
    for i in range(3):  # Saharia et al. 2022: s = the 90% quantile of |x_0| in [1, 1.5]; clamp to [-s, s], divide by s
        s = min(max(float(np.quantile(x0[i].abs().numpy(), 0.9)), 1.0), 1.5)
        assert torch.allclose(field.denoise(X[:3], 1.0)[i], x0[i].clamp(-s, s) / s)


def test_threshold_x0_is_diffusers_threshold_sample():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=0.95, sample_max_value=2.0)
    x0 = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 1.7
    for dtype in (torch.float32, torch.float16):
        assert torch.equal(threshold_x0(x0.to(dtype), 0.95, 2.0), scheduler._threshold_sample(x0.to(dtype)))


def test_vp_start_noise_and_timestep_interpolation():
    abar = ddpm_alphas_cumprod()
    sigmas = np.sqrt((1 - abar) / abar)
    vp = samplers.wrap(_eps_net, "vp_eps", start_noise="vp")
    assert vp.prior_scale(80.0) == math.sqrt(1 + 80.0**2)  # x_vp,T = eps, diffusers' init_noise_sigma = 1
    mid = 0.25 * sigmas[500] + 0.75 * sigmas[501]
    linear = samplers.wrap(_eps_net, "vp_eps", sigma_interp="linear")
    assert math.isclose(linear.timestep(mid), 500.75, rel_tol=1e-12)  # diffusers' EulerDiscrete interpolation
    assert 500.75 < vp.timestep(mid) < 500.76  # log sigma interpolation (k-diffusion): log is concave
    assert samplers.wrap(_eps_net, "vp_eps", quantize=True).timestep(mid) == 501.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(start_noise="ve"), "start_noise must be one of sigma, vp; got 've'"),
    (dict(sigma_interp="cubic"), "sigma_interp must be one of log, linear; got 'cubic'"),
    (dict(clip_sample_range=0.0), "needs clip_sample_range > 0"),
    (dict(dynamic_thresholding_ratio=1.5), "0 < dynamic_thresholding_ratio <= 1"),
    (dict(beta_schedule="cosine"), "unknown beta_schedule 'cosine'; allowed: linear, scaled_linear, squaredcos_cap_v2"),
    (dict(table_dtype="float16"), "table_dtype must be 'float64' or 'float32'"),
])
def test_vp_bad_kwargs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        samplers.wrap(_eps_net, "vp_v", **kwargs)


def test_grid_coverage_warning():
    vp = samplers.wrap(_eps_net, "vp_eps")
    warning = samplers.grid_coverage_warning(vp, samplers.time_grid("uniform", 10))  # sigma = 1 of 0.01 .. 157
    assert warning.startswith("time grid starts at t=1, where pure start noise leaves out 20% of the vp_eps")
    assert "trained up to t=157.4" in warning and "\n" not in warning
    full = samplers.time_grid("karras", 10, sigma_min=vp.sigma_min, sigma_max=vp.sigma_max)
    assert samplers.grid_coverage_warning(vp, full) is None
    below = samplers.grid_coverage_warning(vp, samplers.time_grid("karras", 10, sigma_max=vp.sigma_max))
    assert below.startswith("time grid steps down to t=0.002, below the vp_eps model's lowest trained sigma 0.01")
    flow = samplers.wrap(GaussianNet("flow"), "flow")
    assert samplers.grid_coverage_warning(flow, samplers.time_grid("shift", 8)) is None
    assert "t=0.5" in samplers.grid_coverage_warning(flow, samplers.time_grid("uniform", 8, t_max=0.5))


@pytest.mark.parametrize("interface,t", [("flow", 0.3), ("edm", 2.5), ("vp_eps", 0.7), ("vp_v", 0.7), ("vp_x0", 0.7)])
def test_sde_drift_skips_only_exact_operations(interface, t):
    # The drift skips multiplying by alpha = 1, subtracting 0 * x and dividing by det = 1 where they apply; outputs
    # written before keep their bits: equal, bit for bit, to the formula with every operation done.
    net = GaussianNet(interface) if interface in ("flow", "edm") else (lambda x, *times: torch.sin(x) * 0.7)
    field = samplers.wrap(net, interface)
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(3)) * (t if interface == "edm" else 1.0)
    v = field.velocity(x, t)
    eps = (field.alpha(t) * v - field.dalpha(t) * x) / field._det(t)
    every_operation = v + (0.5 * field.diffusion(t) / field.sigma(t)) * eps
    assert torch.equal(field.sde_drift(x, t), every_operation)
