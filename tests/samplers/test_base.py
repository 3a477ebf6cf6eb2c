import json

import pytest

import samplers


def test_fields_are_keyword_only():
    with pytest.raises(TypeError):
        samplers.HeunSampler(4)
    with pytest.raises(TypeError):
        samplers.GaussianNoiseSampler(0.0, 1.0)


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("ddim", dict(steps=3, eta="x"), r"ddim: eta must be float, got 'x' \(str\)"),
        ("ddim", dict(steps=3, eta=True), "eta must be float"),
        ("langevin", dict(steps=3, n_corrector=1.0), "n_corrector must be int"),
        ("heun", dict(steps=3, guidance_interval=[0.1, 0.2, 0.3]), "guidance_interval must be"),
        ("gaussian_noise", dict(std=None), "std must be float"),
    ],
)
def test_the_constructor_checks_json_types(name, kwargs, match):
    with pytest.raises(samplers.SamplerStateError, match=match):
        samplers.SAMPLERS[name](**kwargs)


def test_float_settings_are_stored_as_floats_and_intervals_as_tuples():
    s = samplers.build("edm_stochastic", steps=3, S_churn=2, S_tmax=10, guidance_interval=[0, 1])
    assert s.S_churn == 2.0 and isinstance(s.S_churn, float) and isinstance(s.S_tmax, float)
    assert s.guidance_interval == (0, 1) and s.save()["guidance_interval"] == [0, 1]


def test_saved_keys_keep_their_order():
    # `steps`, the method's own settings, then the shared grid settings: the key order of every stored state.
    assert list(samplers.build("ddim", steps=3).save()) == [
        "name", "version", "steps", "eta", "use_clipped_model_output", "time_dist", "time_kwargs", "dtype", "guidance_interval"]
    assert list(samplers.build("langevin", steps=3).save())[2:5] == ["steps", "snr", "n_corrector"]
    assert list(samplers.GaussianNoiseSampler().save()) == ["name", "version", "mean", "std"]


def test_from_state_of_a_class_checks_name_version_and_keys():
    state = json.loads(json.dumps(samplers.build("ddim", steps=3, eta=0.5).save()))
    assert samplers.DDIMSampler.from_state(state) == samplers.build("ddim", steps=3, eta=0.5)
    with pytest.raises(samplers.SamplerStateError, match="state is for sampler 'ddim', not 'heun'"):
        samplers.HeunSampler.from_state(state)
    with pytest.raises(samplers.SamplerStateError, match="version 2 is newer"):
        samplers.DDIMSampler.from_state({**state, "version": 2})
    with pytest.raises(samplers.SamplerStateError, match=r"unknown argument\(s\) stochastic; allowed: steps, eta"):
        samplers.DDIMSampler.from_state({**state, "stochastic": True})


def test_build_names_unknown_arguments():
    with pytest.raises(samplers.SamplerStateError, match=r"ddim: unknown argument\(s\) S_churn; allowed: steps, eta"):
        samplers.build("ddim", steps=3, S_churn=1.0)
