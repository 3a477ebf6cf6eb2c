"""pipeline/network.py: the grid coverage warning the driver logs before a job starts."""

import re

import pytest

from pipeline.config import load_config
from pipeline.run.sampling import build_sampler
from pipeline.network import coverage_warning
from tests.pipeline.config.files import DEMO
from tests.pipeline.jobs import gaussian_job

VP = {"factory": "pipeline.models.gaussian:build_gaussian", "kwargs": {"interface": "vp_eps"}, "interface": "vp_eps",
      "shape": [3, 4]}


@pytest.mark.parametrize("sampler,match", [
    ({"name": "heun", "steps": 8, "time_dist": "uniform"}, r"starts at t=1, where pure start noise leaves out 20%.*"
                                                           r"trained up to t=157"),
    ({"name": "heun", "steps": 8, "time_dist": "karras"}, r"steps down to t=0.002, below the vp_eps model's lowest"),
])
def test_a_grid_covering_part_of_the_trained_range_warns(tmp_path, sampler, match):
    cfg = gaussian_job(str(tmp_path), model=VP, sampler=sampler)
    warning = coverage_warning(cfg.model, build_sampler(cfg))
    assert warning is not None and "\n" not in warning
    assert re.search(match, warning), warning


def test_defaults_and_reproduced_schedulers_are_quiet(tmp_path):
    demo = load_config(str(DEMO))
    assert coverage_warning(demo.model, build_sampler(demo)) is None  # flow, uniform grid
    edm = gaussian_job(str(tmp_path))  # edm, karras 0.002 .. 80
    assert coverage_warning(edm.model, build_sampler(edm)) is None
    vp_full = gaussian_job(str(tmp_path), model=VP, sampler={"name": "heun", "steps": 8, "time_dist": "karras",
                                                             "time_kwargs": {"sigma_min": 0.011, "sigma_max": 157.0}})
    assert coverage_warning(vp_full.model, build_sampler(vp_full)) is None
    ddim = gaussian_job(str(tmp_path), model=VP, sampler={
        "name": "ddim", "steps": 8, "time_dist": "diffusers",
        "time_kwargs": {"scheduler_config": {"_class_name": "DDIMScheduler", "clip_sample": False}}})
    assert coverage_warning(ddim.model, build_sampler(ddim)) is None
