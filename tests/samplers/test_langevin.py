import functools
import math

import pytest
import torch

import samplers
from tests.samplers.oracle import DATA, start_noise
from tests.samplers.sampler_checks import (
    assert_rows_independent_of_batch, assert_save_load_bitwise, exact_moments, field,
)

N, DIM = 100, 200  # 100 samples x 200 i.i.d. coordinates; the step size couples a sample's coordinates


def _block_moments(x: torch.Tensor) -> tuple[float, float, float, float]:
    """(mean, var, se of mean, se of var) of (N, DIM) draws, with standard errors over the N samples
    (coordinates of one sample share its Langevin step sizes, so they are not independent draws)."""
    mean, var = x.mean().item(), x.var().item()
    rows_mean, rows_var = x.mean(dim=1), ((x - mean) ** 2).mean(dim=1)
    return mean, var, rows_mean.std().item() / math.sqrt(x.shape[0]), rows_var.std().item() / math.sqrt(x.shape[0])


def _stationary_inflation(snr: float, dim: int) -> float:
    """Var / target var left by the snr step rule on a Gaussian: with e = 2 snr^2 |z|^2 / |score|^2, a move
    keeps E|x - m|^2 when E[1 / |x - m|^2] = 1 / ((1 + snr^2) (D + 2) v); for |x - m|^2 ~ V chi^2_D this gives
    V = v (1 + snr^2) (D + 2) / (D - 2) (unadjusted Langevin's O(step) bias; 1 + snr^2 as D -> inf)."""
    return (1 + snr**2) * (dim + 2) / (dim - 2)


def test_without_corrector_it_is_euler_maruyama_bit_for_bit():
    kw = dict(net=field("edm"), shape=(3,), seed=2)
    a = samplers.build("langevin", steps=9, time_dist="karras", n_corrector=0).sample(8, "cpu", **kw)
    b = samplers.build("euler_maruyama", steps=9, time_dist="karras").sample(8, "cpu", **kw)
    assert torch.equal(a, b)


def test_step_is_predictor_then_score_sde_corrector():
    sampler = samplers.build("langevin", steps=4, snr=0.2, n_corrector=2, dtype="float64")
    net, t, t_next = field("edm"), 3.0, 1.5
    x = start_noise(8, 16) * t
    zs = [start_noise(8, 16, seed=j) for j in range(3)]
    ours = sampler.forward(net, x, t, t_next, noise=lambda draw=0: zs[draw])
    # By hand: Euler-Maruyama predictor (draw 0), then score_sde's LangevinCorrector with per-sample norms.
    score = lambda y, sigma: (DATA.mu - y) / (DATA.s**2 + sigma**2)  # noqa: E731  exact score of p_sigma
    drift = (x - DATA.denoiser(x, t)) / t - t * score(x, t)  # v - beta/2 score, beta = 2 sigma
    y = x + (t_next - t) * drift + math.sqrt(2 * t * (t - t_next)) * zs[0]
    for j in (1, 2):
        g = score(y, t_next)
        e = 2 * (0.2 * zs[j].norm(dim=1, keepdim=True) / g.norm(dim=1, keepdim=True)) ** 2
        y = y + e * g + torch.sqrt(2 * e) * zs[j]
    assert torch.allclose(ours, y, rtol=1e-12, atol=1e-12)


class _Recorder:
    def __init__(self):
        self.calls = []

    def step(self, k, like, draw=0):
        self.calls.append((k, draw))
        return torch.randn(like.shape, dtype=like.dtype, generator=torch.Generator().manual_seed(len(self.calls)))


def test_noise_draws_and_no_noise_on_the_last_step():
    recorder = _Recorder()
    samplers.build("langevin", steps=4, n_corrector=2).integrate(field("flow"), start_noise(4, 8).float(), noise=recorder)
    assert recorder.calls == [(k, j) for k in range(3) for j in range(3)]


def test_corrector_moves_samples_to_p_t():
    # From a wrong start N(m + 1, 4 v), 150 corrector moves at fixed sigma reach p_sigma = N(mu, s^2 + sigma^2),
    # up to the step rule's own variance inflation (derived in _stationary_inflation).
    snr, sigma = 0.16, 1.0
    sampler = samplers.build("langevin", steps=1, snr=snr, n_corrector=150, dtype="float64")
    v = DATA.s**2 + sigma**2
    noise = samplers.SampleNoise(seed=9, start_index=0, n=N)
    x = DATA.mu + 1.0 + 2.0 * math.sqrt(v) * noise.start((DIM,), torch.float64)
    x = sampler.correct(field("edm"), x, sigma, noise=functools.partial(noise.step, 0, x))
    mean, var, se_mean, se_var = _block_moments(x)
    assert abs(mean - DATA.mu) < 5 * se_mean + 1e-3, (mean, se_mean)  # + 0.949^150 of the start offset
    assert abs(var - v * _stationary_inflation(snr, DIM)) < 5 * se_var, (var / v, se_var / v)


def test_predictor_corrector_reaches_the_target():
    snr = 0.16
    sampler = samplers.build("langevin", steps=64, time_dist="karras", snr=snr, n_corrector=1, dtype="float64")
    x = sampler.sample(N, "cpu", net=field("edm"), shape=(DIM,), seed=3)
    mean, var, se_mean, se_var = _block_moments(x)
    assert abs(mean - DATA.mu) < 5 * se_mean, (mean, se_mean)
    # Target variance times the corrector's stationary inflation (+4.6% for snr = 0.16, D = 200), plus 1% of s^2
    # for what is left of the predictor's O(h) bias (Euler-Maruyama alone: +8.9% here; measured left: < 0.2%).
    target = DATA.s**2 * _stationary_inflation(snr, DIM)
    assert abs(var - target) < 5 * se_var + 0.01 * DATA.s**2, (var / DATA.s**2, se_var)


def test_corrector_repairs_a_coarse_predictor():
    # 16 karras steps: Euler-Maruyama alone is 41% too wide (exactly); 4 corrector moves per step bring it
    # within a third of that.
    em_var = exact_moments(samplers.build("euler_maruyama", steps=16, time_dist="karras", dtype="float64"),
                           field("edm"))[1]
    sampler = samplers.build("langevin", steps=16, time_dist="karras", n_corrector=4, dtype="float64")
    _, var, _, _ = _block_moments(sampler.sample(N, "cpu", net=field("edm"), shape=(DIM,), seed=4))
    assert em_var / DATA.s**2 - 1 > 0.3
    assert abs(var / DATA.s**2 - 1) < (1 / 3) * (em_var / DATA.s**2 - 1), (var / DATA.s**2, em_var / DATA.s**2)


def test_state_errors():
    with pytest.raises(samplers.SamplerStateError, match="snr > 0"):
        samplers.build("langevin", steps=4, snr=0.0)
    with pytest.raises(samplers.SamplerStateError, match="n_corrector must be int"):
        samplers.build("langevin", steps=4, n_corrector=1.5)


@pytest.mark.parametrize("interface,kwargs", [("edm", dict(time_dist="karras")), ("flow", dict(n_corrector=2))])
def test_save_load_and_batch_independence(interface, kwargs):
    sampler = samplers.build("langevin", steps=6, **kwargs)
    assert_save_load_bitwise(sampler, field(interface), shape=(16,))
    assert_rows_independent_of_batch(sampler, field(interface), shape=(16,))
