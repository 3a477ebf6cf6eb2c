import json

import pytest
import torch

import samplers
from samplers.analytic import GaussianNet

STEP_SAMPLERS = [n for n, c in samplers.SAMPLERS.items() if issubclass(c, samplers.StepSampler)]


def _field(name):
    interface = "meanflow" if samplers.SAMPLERS[name].requires is samplers.MeanFlowField else "flow"
    return samplers.wrap(GaussianNet(interface), interface)


def _draw(sampler, name):
    if isinstance(sampler, samplers.StepSampler):
        return sampler.sample(6, "cpu", net=_field(name), shape=(3,), seed=4, start_index=2)
    return sampler.sample(6, "cpu", shape=(3,), seed=4, start_index=2)


@pytest.mark.parametrize("name", samplers.SAMPLER_NAMES)
def test_save_load_round_trip_gives_bit_identical_samples(name):
    kwargs = {"steps": 5} if name in STEP_SAMPLERS else {}
    sampler = samplers.build(name, **kwargs)
    state = json.loads(json.dumps(sampler.save()))  # plain JSON
    assert state["name"] == name and state["version"] >= 1
    rebuilt = samplers.from_state(state)
    assert type(rebuilt) is type(sampler) and rebuilt.save() == sampler.save()
    assert torch.equal(_draw(rebuilt, name), _draw(sampler, name))


def test_load_returns_self_and_replaces_configuration():
    sampler = samplers.build("heun", steps=3)
    state = samplers.build("heun", steps=9, time_dist="karras").save()
    assert sampler.load(**state) is sampler and sampler.steps == 9 and sampler.time_dist == "karras"


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown sampler 'rk45'; allowed: euler, heun"):
        samplers.build("rk45", steps=3)
    with pytest.raises(ValueError, match="unknown sampler"):
        samplers.from_state({"name": "rk45"})


@pytest.mark.parametrize(
    "change,match",
    [
        ({"bogus": 1}, r"heun: unknown argument\(s\) bogus; allowed: steps, time_dist"),
        ({"steps": "ten"}, r"heun: steps must be int, got 'ten' \(str\)"),
        ({"steps": True}, "steps must be int"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"dtype": "float16"}, "dtype must be"),
        ({"time_dist": "cosine"}, "unknown time_dist"),
        ({"time_kwargs": {"rho": "x"}}, "time_kwargs must be"),
        ({"version": 99}, "state version 99 is newer than this seedshard's heun"),
        ({"version": "1"}, "version must be a positive int"),
        ({"name": "euler"}, "state is for sampler 'euler', not 'heun'"),
        ({"guidance_interval": [1.0, 0.5]}, "lo < hi"),
    ],
)
def test_load_rejects_bad_states(change, match):
    state = {**samplers.build("heun", steps=4).save(), **change}
    with pytest.raises(samplers.SamplerStateError, match=match):
        samplers.build("heun", steps=4).load(**state)


def test_missing_required_argument():
    with pytest.raises(samplers.SamplerStateError, match="missing required argument"):
        samplers.from_state({"name": "euler"})
