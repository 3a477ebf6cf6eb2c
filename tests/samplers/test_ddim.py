import math

import pytest
import torch

import samplers
from tests.samplers.oracle import DATA, convergence_order, start_noise
from tests.samplers.sampler_checks import (
    assert_rows_independent_of_batch, assert_save_load_bitwise, exact_moments, field, standard_errors,
)


@pytest.mark.parametrize("interface,steps", [("edm", [16, 32, 64, 128, 256]), ("flow", [16, 32, 64, 128, 256])])
def test_eta_0_converges_to_the_exact_ode_endpoint_at_first_order(interface, steps):
    order, errors = convergence_order("ddim", interface, steps)
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert -1.2 < order < -0.8, (order, errors)  # measured -0.99 (edm), -0.97 (flow)


def test_eta_0_on_a_sigma_field_is_euler():
    kw = dict(steps=10, time_dist="karras", dtype="float64")
    x_T = start_noise(8, 3) * 80.0
    ddim = samplers.build("ddim", **kw).integrate(field("edm"), x_T)  # no noise source needed at eta = 0
    euler = samplers.build("euler", **kw).integrate(field("edm"), x_T)
    assert torch.allclose(ddim, euler, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_step_is_song_et_al_eq_12_in_vp_coordinates(eta):
    # A vp_eps model's DDIM step, computed by hand in the paper's VP coordinates (abar_t, Eq. 12 and 16).
    eps_net = lambda x_vp, ts: 0.3 * x_vp + 1e-3 * ts[:, None]  # noqa: E731  any eps-prediction network
    vp = samplers.wrap(eps_net, "vp_eps")
    sigma_t, sigma_prev = 5.0, 1.2
    x = start_noise(8, 3) * sigma_t
    z = start_noise(8, 3, seed=1)
    ours = samplers.build("ddim", steps=4, eta=eta, dtype="float64").forward(
        vp, x, sigma_t, sigma_prev, noise=lambda draw=0: z)
    a_t, a_prev = 1 / (1 + sigma_t**2), 1 / (1 + sigma_prev**2)
    x_vp = x * math.sqrt(a_t)
    eps = eps_net(x_vp, torch.full((8,), vp.timestep(sigma_t), dtype=torch.float64))
    x0 = (x_vp - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    s_t = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
    x_prev_vp = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - s_t**2) * eps + s_t * z
    assert torch.allclose(ours, x_prev_vp / math.sqrt(a_prev), rtol=1e-12, atol=1e-12)


def test_eta_1_end_distribution():
    # 100 samples x 200 i.i.d. coordinates = 20,000 draws of the 1-D target.
    net = field("flow")

    def build(steps):
        return samplers.build("ddim", steps=steps, eta=1.0, dtype="float64")

    # Discretisation allowance, computed exactly (affine in x_T and the noise on this field): ancestral
    # sampling ignores Var(x_0 | x_t) within a step, so the variance is low by O(1/steps): -2.1% at 256 steps,
    # halving per doubling of steps; the mean is exact.
    mean, var = exact_moments(build(256), net)
    assert abs(mean - DATA.mu) < 1e-12 and abs(var / DATA.s**2 - 1) < 0.025, (mean, var)
    biases = [exact_moments(build(n), net)[1] / DATA.s**2 - 1 for n in (256, 512, 1024)]
    assert all(1.8 < a / b < 2.2 for a, b in zip(biases, biases[1:])), biases
    # Monte Carlo through the real noise path: within 5 se of the exact moments (target +- 5 se + allowance).
    x = build(256).sample(100, "cpu", net=net, shape=(200,), seed=3).flatten()
    se_mean, se_var = standard_errors(x.numel(), math.sqrt(var))
    assert abs(x.mean().item() - mean) < 5 * se_mean, x.mean()
    assert abs(x.var().item() - var) < 5 * se_var, x.var()


def test_eta_changes_samples_and_is_checked():
    kw = dict(net=field("flow"), shape=(3,), seed=0)
    a = samplers.build("ddim", steps=8).sample(4, "cpu", **kw)
    assert not torch.allclose(a, samplers.build("ddim", steps=8, eta=0.5).sample(4, "cpu", **kw))
    assert not samplers.build("ddim", steps=8).stochastic and samplers.build("ddim", steps=8, eta=0.1).stochastic
    with pytest.raises(samplers.SamplerStateError, match=r"eta must be in \[0, 1\], got 1.5"):
        samplers.build("ddim", steps=8, eta=1.5)
    with pytest.raises(samplers.SamplerStateError, match="eta must be float"):
        samplers.build("ddim", steps=8, eta="1")


@pytest.mark.parametrize("interface,kwargs", [("edm", dict(time_dist="karras", eta=1.0)), ("flow", dict(eta=0.5))])
def test_save_load_and_batch_independence(interface, kwargs):
    sampler = samplers.build("ddim", steps=6, **kwargs)
    assert_save_load_bitwise(sampler, field(interface))
    assert_rows_independent_of_batch(sampler, field(interface))
