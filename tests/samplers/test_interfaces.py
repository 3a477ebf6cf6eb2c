import math

import pytest
import torch

import samplers
from samplers.analytic import GaussianData, GaussianNet
from samplers.interfaces import ddpm_alphas_cumprod, edm_precond

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
