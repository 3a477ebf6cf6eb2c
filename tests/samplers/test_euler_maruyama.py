import math

import pytest
import torch

import samplers
from samplers.analytic import GaussianNet
from tests.samplers.oracle import DATA

# 100 samples x 200 i.i.d. coordinates = 20,000 draws of the 1-D target (the exact field acts per coordinate).
N, DIM = 100, 200


@pytest.mark.parametrize(
    "interface,kwargs",
    [("edm", dict(time_dist="karras", steps=256)), ("flow", dict(time_dist="uniform", steps=256))],
)
def test_euler_maruyama_reaches_target_mean_and_variance(interface, kwargs):
    sampler = samplers.build("euler_maruyama", dtype="float64", **kwargs)
    field = samplers.wrap(GaussianNet(interface, DATA.mu, DATA.s), interface)
    x = sampler.sample(N, "cpu", net=field, shape=(DIM,), seed=3).flatten()
    n = x.numel()
    se_mean = DATA.s / math.sqrt(n)
    se_var = DATA.s**2 * math.sqrt(2.0 / (n - 1))
    # 5 standard errors, plus 2% of the variance for the O(h) bias of 256 Euler-Maruyama steps.
    assert abs(x.mean().item() - DATA.mu) < 5 * se_mean, x.mean()
    assert abs(x.var().item() - DATA.s**2) < 5 * se_var + 0.02 * DATA.s**2, x.var()


def test_euler_maruyama_is_not_the_ode():
    field = samplers.wrap(GaussianNet("flow"), "flow")
    em = samplers.build("euler_maruyama", steps=16).sample(8, "cpu", net=field, shape=(4,), seed=0)
    ode = samplers.build("euler", steps=16).sample(8, "cpu", net=field, shape=(4,), seed=0)
    assert not torch.allclose(em, ode)


def test_last_step_adds_no_noise():
    # One step from sigma_max to 0 is the last step: Tweedie's denoiser, whatever the seed's step noise.
    field = samplers.wrap(GaussianNet("edm"), "edm")
    sampler = samplers.build("euler_maruyama", steps=1, time_dist="karras", dtype="float64")
    x = sampler.sample(8, "cpu", net=field, shape=(4,), seed=5)
    x_T = samplers.SampleNoise(5, 0, 8).start((4,), torch.float64) * 80.0
    assert torch.allclose(x, DATA.denoiser(x_T, 80.0), rtol=0, atol=1e-12)


def test_integrate_without_noise_source_is_a_clear_error():
    field = samplers.wrap(GaussianNet("flow"), "flow")
    with pytest.raises(ValueError, match="needs noise="):
        samplers.build("euler_maruyama", steps=4).integrate(field, torch.zeros(2, 3))
