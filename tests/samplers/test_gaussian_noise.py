import math

import torch

import samplers


def test_default_shape_mean_and_std():
    x = samplers.GaussianNoiseSampler(mean=2.0, std=0.5).sample(64, "cpu")
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32
    n = x.numel()
    assert abs(x.mean().item() - 2.0) < 5 * 0.5 / math.sqrt(n)
    assert abs(x.std().item() - 0.5) < 5 * 0.5 * math.sqrt(0.5 / n) + 1e-3


def test_is_the_start_noise_of_each_index():
    x = samplers.GaussianNoiseSampler().sample(4, "cpu", shape=(5,), seed=3, start_index=10)
    assert torch.equal(x, samplers.SampleNoise(3, 10, 4).start((5,), torch.float32))


def test_save_load():
    state = samplers.GaussianNoiseSampler(mean=1.0, std=3.0).save()
    assert state == {"name": "gaussian_noise", "version": 1, "mean": 1.0, "std": 3.0}
    assert samplers.from_state(state).std == 3.0


def test_noise_scheme_chooses_how_the_draw_is_made():
    x = samplers.GaussianNoiseSampler().sample(4, "cpu", shape=(5,), seed=3, start_index=10, noise_scheme="v2")
    assert torch.equal(x, samplers.SampleNoise(3, 10, 4, scheme="v2").start((5,), torch.float32))
    assert set(samplers.NOISE_SCHEMES) == {"v1", "v2"}
