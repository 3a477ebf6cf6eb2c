import dataclasses
from typing import Any

import pytest
import torch

import samplers
from tests.samplers.sampler_checks import field


@dataclasses.dataclass(kw_only=True)
class ScaledEuler(samplers.StepSampler):
    """A new integrator as README's "Adding an integrator" describes: fields, range checks, `forward`."""

    name = "scaled_euler"
    gain: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.gain > 0:
            raise samplers.SamplerStateError(f"{self.name}: gain must be > 0, got {self.gain!r}")

    def forward(self, net, x, t_curr, t_next, *, noise=None, history=None):
        return x + ((t_next - t_curr) * self.gain) * net.velocity(x, t_curr)


def test_a_new_integrator_is_its_fields_and_its_forward():
    sampler = ScaledEuler(steps=6, gain=1)
    assert sampler.save() == {"name": "scaled_euler", "version": 1, "steps": 6, "gain": 1.0, "time_dist": "uniform",
                              "time_kwargs": {"t_max": 1.0, "t_min": 0.0}, "dtype": "float32",
                              "guidance_interval": None}
    assert ScaledEuler.from_state(sampler.save()) == sampler
    kw = dict(net=field("flow"), shape=(3,), seed=5)
    assert torch.equal(sampler.sample(4, "cpu", **kw), samplers.EulerSampler(steps=6).sample(4, "cpu", **kw))
    with pytest.raises(samplers.SamplerStateError, match="gain must be > 0, got 0.0"):
        ScaledEuler(steps=6, gain=0)


@dataclasses.dataclass(kw_only=True)
class Recorder(samplers.StepSampler):
    """Euler that records which history dict each step received."""

    name = "recorder"
    seen: list[Any] = dataclasses.field(default_factory=list, init=False, repr=False)

    def forward(self, net, x, t_curr, t_next, *, noise=None, history=None):
        self.seen.append(history)
        history["steps"] = history.get("steps", 0) + 1
        return super().last_step(net, x, t_curr, t_next, noise=noise, history=history)

    def last_step(self, net, x, t_curr, t_last, *, noise=None, history=None):
        self.seen.append(history)
        return super().last_step(net, x, t_curr, t_last, noise=noise, history=history)


def test_history_is_one_fresh_dict_per_run_passed_to_every_step():
    sampler, net, x = Recorder(steps=4), field("flow"), torch.ones(2, 3)
    sampler.integrate(net, x)
    sampler.integrate(net, x)
    first, second = sampler.seen[:4], sampler.seen[4:]
    assert all(h is first[0] for h in first) and all(h is second[0] for h in second)
    assert first[0] is not second[0] and first[0] == second[0] == {"steps": 3}


def test_multistep_runs_do_not_share_history():
    sampler, net = samplers.build("dpmpp_2m", steps=5), field("flow")
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampler.integrate(net, x), sampler.integrate(net, x))


@pytest.mark.parametrize("name", ["euler", "euler_maruyama"])
def test_sample_draws_every_noise_by_the_chosen_scheme(name):
    from samplers.analytic import GaussianNet

    net = samplers.wrap(GaussianNet("flow"), "flow")
    sampler = samplers.build(name, steps=4)
    new = sampler.sample(3, "cpu", net=net, shape=(2, 3), seed=5, start_index=7)  # v2 by default
    assert torch.equal(new, sampler.sample(3, "cpu", net=net, shape=(2, 3), seed=5, start_index=7, noise_scheme="v2"))
    old = sampler.sample(3, "cpu", net=net, shape=(2, 3), seed=5, start_index=7, noise_scheme="v1")
    for scheme, x in (("v1", old), ("v2", new)):
        noise = samplers.SampleNoise(5, 7, 3, scheme=scheme)
        expected = sampler.integrate(net, noise.start((2, 3), torch.float32) * net.prior_scale(1.0), noise=noise)
        assert torch.equal(x, expected)
    assert not torch.equal(new, old)
    with samplers.NoiseProducer(noise) as producer:  # drawn ahead on a thread: the same bits
        assert torch.equal(sampler.integrate(net, noise.start((2, 3), torch.float32), noise=producer), new)
    with pytest.raises(ValueError, match="unknown noise scheme 'v9'"):
        sampler.sample(1, "cpu", net=net, shape=(2,), noise_scheme="v9")
