import numpy as np
import pytest
import torch

import samplers
from samplers.analytic import GaussianNet
from samplers.noise import LABEL_STREAM, STEP_STREAM, SampleNoise


def test_start_noise_is_the_documented_philox_scheme():
    # Written out independently of SampleNoise, from the module docstring.
    seed, index = 1234, 7
    bitgen = np.random.Philox(key=[seed, index], counter=[0, 0, 0, 0])  # key words: seed, index
    expected = np.random.Generator(bitgen).standard_normal((2, 3), dtype=np.float32)
    got = SampleNoise(seed, index, 1).start((2, 3), torch.float32)[0]
    assert np.array_equal(got.numpy(), expected)


def test_step_and_label_streams_follow_the_scheme():
    seed, index, k = 9, 3, 5
    step = np.random.Generator(np.random.Philox(key=[seed, index], counter=[0, STEP_STREAM + k, 1, 0]))
    noise = SampleNoise(seed, index, 1)
    assert np.array_equal(noise.step(k, torch.zeros(1, 4), draw=1)[0].numpy(), step.standard_normal(4, dtype=np.float32))
    label = np.random.Generator(np.random.Philox(key=[seed, index], counter=[0, LABEL_STREAM, 0, 0])).integers(10)
    assert noise.labels(10).tolist() == [int(label)]


def test_noise_of_an_index_does_not_depend_on_batch_layout():
    a = SampleNoise(0, 0, 8).start((3, 4), torch.float32)
    b = SampleNoise(0, 3, 5).start((3, 4), torch.float32)
    assert torch.equal(a[3:], b)


def test_seeds_are_not_truncated_to_32_bits():
    a = SampleNoise(5, 0, 1).start((16,), torch.float32)
    b = SampleNoise(5 + 2**32, 0, 1).start((16,), torch.float32)
    assert not torch.equal(a, b)


def test_streams_and_draws_are_distinct():
    noise = SampleNoise(0, 0, 4)
    like = torch.zeros(4, 16)
    draws = [noise.start((16,), torch.float32), noise.step(0, like), noise.step(1, like), noise.step(0, like, draw=1)]
    for i in range(len(draws)):
        for j in range(i):
            assert not torch.equal(draws[i], draws[j])


@pytest.mark.parametrize("name", ["heun", "euler_maruyama"])
def test_sample_rows_depend_only_on_seed_and_index(name):
    field = samplers.wrap(GaussianNet("flow"), "flow")
    sampler = samplers.build(name, steps=6)
    whole = sampler.sample(8, "cpu", net=field, shape=(2, 3), seed=11, start_index=0)
    tail = sampler.sample(5, "cpu", net=field, shape=(2, 3), seed=11, start_index=3)
    assert torch.equal(whole[3:], tail)
    other_seed = sampler.sample(5, "cpu", net=field, shape=(2, 3), seed=12, start_index=3)
    assert not torch.equal(tail, other_seed)


def test_noise_is_drawn_on_cpu_then_moved(monkeypatch):
    # The device only receives the CPU bits: a "meta" device round trip shows the target device is honoured.
    noise = SampleNoise(0, 0, 2, device="meta").start((3,), torch.float16)
    assert noise.device.type == "meta" and noise.dtype == torch.float16


@pytest.mark.parametrize("seed,start", [(-1, 0), (2**64, 0), (0, -3), ("1", 0)])
def test_bad_seed_or_index_is_an_error(seed, start):
    with pytest.raises(ValueError, match="seed|start_index"):
        SampleNoise(seed, start, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_noise_is_the_same_on_cuda():
    cpu = SampleNoise(1, 0, 4).start((8,), torch.float32)
    cuda = SampleNoise(1, 0, 4, device="cuda").start((8,), torch.float32)
    assert torch.equal(cpu, cuda.cpu())
