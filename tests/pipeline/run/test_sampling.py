"""A sampler that cannot run with the model's interface is refused in `prepare` (pipeline.run.sampling)."""

from __future__ import annotations

import pytest

import samplers
from pipeline.config import ConfigError
from pipeline.models.gaussian import build_gaussian
from pipeline.run import driver
from pipeline.run.preflight import check_sampler_fits
from tests.pipeline.jobs import gaussian_job

FLOW = {"model": {"kwargs": {"interface": "flow"}, "interface": "flow"}}


def test_fitting_samplers_pass():
    flow = samplers.wrap(build_gaussian("flow"), "flow")
    meanflow = samplers.wrap(build_gaussian("meanflow"), "meanflow")
    check_sampler_fits(samplers.build("euler", steps=4), flow, None, "flow")
    check_sampler_fits(samplers.build("euler_jump", steps=1), meanflow, None, "meanflow")
    check_sampler_fits(samplers.build("gaussian_noise"), flow, None, "flow")  # not a step sampler: nothing to check


@pytest.mark.parametrize("name,time_kwargs,match", [
    ("euler_jump", {}, r"^sampler.name='euler_jump' cannot run with model.interface='flow': .*needs a 'meanflow' field"),
    ("euler", {"t_max": 5}, r"time grid starts at t=5 but the 'flow' interface allows t <= 1"),
])
def test_a_sampler_that_cannot_run_is_refused_before_ray_and_before_any_write(tmp_path, monkeypatch, name,
                                                                            time_kwargs, match):
    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(driver, "ray_session", no_ray)
    cfg = gaussian_job(str(tmp_path / "out"), model=FLOW["model"],
                       sampler={"name": name, "time_dist": "uniform", "time_kwargs": time_kwargs, "steps": 2})
    with pytest.raises(ConfigError, match=match) as err:
        driver.run_job(cfg)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
