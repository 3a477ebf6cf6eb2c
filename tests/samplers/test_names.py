"""samplers/names.py: the torch-free name tables agree with the classes they name, and saved states are checked by name."""

import pathlib
import subprocess
import sys

import pytest

import samplers
from samplers import names, schedules, step

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_torch_tables_are_built_from_the_names():
    assert tuple(samplers.SAMPLERS) == tuple(names.SAMPLERS) == samplers.SAMPLER_NAMES
    assert all(cls.name == name for name, cls in samplers.SAMPLERS.items())
    assert tuple(samplers.INTERFACES) == tuple(names.INTERFACES)
    assert all(cls.interface == name for name, cls in samplers.INTERFACES.items())
    assert schedules.DEFAULT_SAMPLING_TIME_KWARGS is names.DEFAULT_SAMPLING_TIME_KWARGS
    assert tuple(step.DTYPES) == names.STATE_DTYPES and all(str(d) == f"torch.{n}" for n, d in step.DTYPES.items())


def test_a_class_registered_under_another_name_is_refused():
    with pytest.raises(ImportError, match="euler:EulerSampler has name 'euler', registered as 'heun'"):
        names.resolve({"heun": "euler:EulerSampler"}, "name")


@pytest.mark.parametrize("state, problem", [
    (["heun"], "a sampler state must be a dict, got list"),
    ({"version": 1}, "unknown sampler None; allowed: euler, heun,"),
    ({"name": "nope", "version": 1}, "unknown sampler 'nope'; allowed: euler, heun,"),
    ({"name": "heun"}, "heun: version must be a positive int, got None"),
    ({"name": "heun", "version": True}, "heun: version must be a positive int, got True"),
    ({"name": "heun", "version": 0}, "heun: version must be a positive int, got 0"),
])
def test_state_problem_names_what_is_wrong(state, problem):
    assert names.state_problem(state).startswith(problem)


def test_every_saved_state_has_no_problem():
    for name in names.SAMPLERS:
        sampler = samplers.build(name, **({"steps": 3} if issubclass(samplers.SAMPLERS[name], samplers.StepSampler) else {}))
        assert names.state_problem(sampler.save()) is None


def test_importing_samplers_and_its_names_loads_no_torch():
    code = ("import sys, samplers, samplers.names; samplers.names.SAMPLERS; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
