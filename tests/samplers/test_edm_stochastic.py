import math

import numpy as np
import pytest
import torch

import samplers
from tests.samplers.oracle import DATA, SIGMA_MAX, start_noise
from tests.samplers.sampler_checks import (
    assert_rows_independent_of_batch, assert_save_load_bitwise, exact_moments, field, standard_errors,
)

EDM_IMAGENET = dict(S_churn=40.0, S_tmin=0.05, S_tmax=50.0, S_noise=1.003)  # Karras et al. 2022, Table 5


@pytest.mark.parametrize("interface,kwargs", [("edm", dict(time_dist="karras")), ("flow", {}),
                                              ("edm", dict(time_dist="exponential", S_tmin=1.0))])
def test_without_churn_it_is_heun_bit_for_bit(interface, kwargs):
    stochastic = samplers.build("edm_stochastic", steps=9, **kwargs)
    heun = samplers.build("heun", steps=9, time_dist=kwargs.get("time_dist", "uniform"))
    a = stochastic.sample(8, "cpu", net=field(interface), shape=(3,), seed=2)
    b = heun.sample(8, "cpu", net=field(interface), shape=(3,), seed=2)
    assert torch.equal(a, b)


def _edm_sampler(denoiser, x_next, t_steps, noise, S_churn, S_tmin, S_tmax, S_noise):
    """EDM's `edm_sampler` (generate.py), transcribed, with step k's randn replaced by noise.step(k, x)."""
    num_steps = len(t_steps) - 1
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        x_cur = x_next
        gamma = min(S_churn / num_steps, np.sqrt(2) - 1) if S_tmin <= t_cur <= S_tmax else 0
        t_hat = t_cur + gamma * t_cur
        x_hat = x_cur + math.sqrt(t_hat**2 - t_cur**2) * S_noise * noise.step(i, x_cur) if gamma > 0 else x_cur
        d_cur = (x_hat - denoiser(x_hat, t_hat)) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if i < num_steps - 1:
            d_prime = (x_next - denoiser(x_next, t_next)) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def test_matches_edm_reference_implementation():
    # S_tmin = 0.05 > sigma_min, so EDM's own loop adds no churn on its last step either.
    sampler = samplers.build("edm_stochastic", steps=18, time_dist="karras", dtype="float64", **EDM_IMAGENET)
    noise = samplers.SampleNoise(seed=5, start_index=0, n=16)
    x_T = noise.start((3,), torch.float64) * SIGMA_MAX
    ours = sampler.integrate(field("edm"), x_T, noise=noise)
    ref = _edm_sampler(DATA.denoiser, x_T, sampler.sample_t().tolist(), noise, **EDM_IMAGENET)
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12), (ours - ref).abs().max()


class _Recorder:
    def __init__(self):
        self.calls = []

    def step(self, k, like, draw=0):
        self.calls.append((k, draw))
        return torch.zeros_like(like)


def test_churn_noise_is_drawn_only_where_gamma_is_positive():
    sampler = samplers.build("edm_stochastic", steps=10, time_dist="karras", S_churn=5.0, S_tmin=0.5, S_tmax=20.0)
    grid = sampler.sample_t().tolist()
    recorder = _Recorder()
    sampler.integrate(field("edm"), start_noise(4, 2).float() * 80.0, noise=recorder)
    expected = [(k, 0) for k in range(len(grid) - 2) if 0.5 <= grid[k] <= 20.0]
    assert recorder.calls == expected and 0 < len(expected) < len(grid) - 2


def test_end_distribution_with_churn():
    # 100 samples x 200 i.i.d. coordinates = 20,000 draws of the 1-D target.
    sampler = samplers.build("edm_stochastic", steps=128, time_dist="karras", dtype="float64", S_churn=40.0)
    net = field("edm")
    # Discretisation allowance, computed exactly (the sampler is affine in x_T and its noise on this field):
    # the mean is unbiased, the variance is 1.4% high at 128 steps and shrinks ~4x per doubling of steps.
    mean, var = exact_moments(sampler, net)
    assert abs(mean - DATA.mu) < 1e-9 and abs(var / DATA.s**2 - 1) < 0.02, (mean, var)
    biases = [exact_moments(samplers.build("edm_stochastic", steps=n, time_dist="karras", dtype="float64",
                                           S_churn=40.0), net)[1] / DATA.s**2 - 1 for n in (128, 256, 512)]
    assert biases[0] > 2.5 * biases[1] > 2.5**2 * biases[2] > 0, biases
    # Monte Carlo through the real noise path: within 5 standard errors of the exact moments, i.e. of the
    # target within 5 se + the allowance above.
    x = sampler.sample(100, "cpu", net=net, shape=(200,), seed=3).flatten()
    se_mean, se_var = standard_errors(x.numel(), math.sqrt(var))
    assert abs(x.mean().item() - mean) < 5 * se_mean, x.mean()
    assert abs(x.var().item() - var) < 5 * se_var, x.var()


@pytest.mark.parametrize("interface,t,t_hat", [("edm", 2.0, 2.8), ("flow", 0.3, 0.45)])
def test_churn_moves_p_t_to_p_t_hat(interface, t, t_hat):
    # StepSampler.churn is affine: x_hat = a x + b eps. From x ~ p_t (exact Gaussian marginals) it must give
    # p_t_hat: a m_t = m_t_hat and a^2 v_t + b^2 = v_t_hat (also for alpha != 1 fields).
    sampler, net, one = samplers.build("heun", steps=2, dtype="float64"), field(interface), torch.ones(1, 1).double()
    a = sampler.churn(net, one, t, t_hat, 0 * one).item()
    b = sampler.churn(net, 0 * one, t, t_hat, one).item()
    m = lambda u: net.alpha(u) * DATA.mu  # noqa: E731
    v = lambda u: net.alpha(u) ** 2 * DATA.s**2 + net.sigma(u) ** 2  # noqa: E731
    assert a * m(t) == pytest.approx(m(t_hat), rel=1e-14) and a**2 * v(t) + b**2 == pytest.approx(v(t_hat), rel=1e-14)


def test_churn_changes_samples_and_needs_a_sigma_field():
    a = samplers.build("edm_stochastic", steps=8, time_dist="karras", S_churn=10.0)
    b = samplers.build("heun", steps=8, time_dist="karras")
    kw = dict(net=field("edm"), shape=(3,), seed=0)
    assert not torch.allclose(a.sample(4, "cpu", **kw), b.sample(4, "cpu", **kw))
    assert a.stochastic and not samplers.build("edm_stochastic", steps=8).stochastic
    with pytest.raises(TypeError, match="needs a sigma field"):
        samplers.build("edm_stochastic", steps=8, S_churn=10.0).sample(4, "cpu", net=field("flow"), shape=(3,))


def test_state_and_errors():
    s = samplers.build("edm_stochastic", steps=4, S_tmax=math.inf)
    assert s.save()["S_tmax"] is None  # EDM's inf, stored as plain JSON
    assert samplers.build("edm_stochastic", steps=4, **EDM_IMAGENET).save()["S_churn"] == 40.0
    with pytest.raises(samplers.SamplerStateError, match="S_churn must be float"):
        samplers.build("edm_stochastic", steps=4, S_churn="lots")
    with pytest.raises(samplers.SamplerStateError, match=">= 0"):
        samplers.build("edm_stochastic", steps=4, S_churn=-1.0)
    with pytest.raises(samplers.SamplerStateError, match="S_tmin <= S_tmax"):
        samplers.build("edm_stochastic", steps=4, S_tmin=2.0, S_tmax=1.0)


def test_save_load_and_batch_independence():
    sampler = samplers.build("edm_stochastic", steps=6, time_dist="karras", **EDM_IMAGENET)
    assert_save_load_bitwise(sampler, field("edm"))
    assert_rows_independent_of_batch(sampler, field("edm"))


class _EveryMultiplication(samplers.EDMStochasticSampler):
    """The sampler as written before it skipped multiplying by ratio = 1 and S_noise = 1 (outputs written then)."""

    def churn(self, net, x, t_curr, t_hat, eps):
        ratio = net.alpha(t_hat) / net.alpha(t_curr)
        return ratio * x + math.sqrt(net.sigma(t_hat) ** 2 - (ratio * net.sigma(t_curr)) ** 2) * eps

    def forward(self, net, x, t_curr, t_next, *, noise=None, history=None):
        in_range = self.S_tmin <= t_curr and (self.S_tmax is None or t_curr <= self.S_tmax)
        gamma = min(self.S_churn / self.steps, math.sqrt(2.0) - 1.0) if in_range else 0.0
        t_hat, x_hat = t_curr, x
        if gamma > 0:
            t_hat = min(t_curr + gamma * t_curr, net.t_max_allowed)
            x_hat = self.churn(net, x, t_curr, t_hat, self.S_noise * noise())
        return samplers.HeunSampler.forward(self, net, x_hat, t_hat, t_next, history=history)


@pytest.mark.parametrize("S_noise", [1.0, 1.003])
def test_skipped_multiplications_keep_every_bit(S_noise):
    kwargs = dict(steps=12, time_dist="karras", S_churn=40.0, S_noise=S_noise)
    noise = samplers.SampleNoise(seed=3, start_index=0, n=32)
    x_T = noise.start((5,), torch.float32) * SIGMA_MAX
    ours = samplers.build("edm_stochastic", **kwargs).integrate(field("edm"), x_T, noise=noise)
    assert torch.equal(ours, _EveryMultiplication(**kwargs).integrate(field("edm"), x_T, noise=noise))
