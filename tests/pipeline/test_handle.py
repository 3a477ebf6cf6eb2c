"""The in-process handle gives the distributed job's bytes, and swaps samplers by state."""

import numpy as np
import pytest
import torch

import samplers
from pipeline.run.driver import run_job
from pipeline.handle import SamplingHandle
from pipeline.output.reader import read_samples
from samplers.analytic import GaussianNet
from tests.pipeline.jobs import gaussian_job


def test_handle_matches_the_distributed_job_bytes(ray_local, tmp_path):
    cfg = gaussian_job(str(tmp_path / "out"), run={"labels": "uniform"}, model={"num_classes": 3},
                       sampler={"guidance_scale": 2.0}, cluster={"num_workers": 1})
    run_job(cfg)
    stored = read_samples(cfg.run.output)
    handle = SamplingHandle.from_config(cfg)
    whole = handle.sample(cfg.run.num_samples)
    assert np.array_equal(whole.numpy(), stored)
    # Any aligned slice: indices 20..39 with the job's batch size give the job's rows.
    assert np.array_equal(handle.sample(20, start_index=20).numpy(), stored[20:40])


def test_set_sampler_and_state_round_trip():
    handle = SamplingHandle(GaussianNet("flow"), interface="flow", shape=(2, 3), sampler=samplers.build("heun", steps=4))
    a = handle.sample(5, seed=1)
    state = handle.set_sampler(samplers.build("euler", steps=8)).save()
    b = handle.sample(5, seed=1)
    assert not torch.equal(a, b)
    assert torch.equal(handle.load(**samplers.build("heun", steps=4).save()).sample(5, seed=1), a)
    assert torch.equal(handle.load(**state).sample(5, seed=1), b)


def test_guidance_needs_a_guide():
    handle = SamplingHandle(GaussianNet("flow"), interface="flow", shape=(2,), sampler=samplers.build("euler", steps=2))
    with pytest.raises(ValueError, match="needs a guide"):
        handle.sample(2, guidance_scale=2.0)


def test_handle_draws_with_the_noise_scheme_of_the_output_it_reproduces(tmp_path):
    from tests.pipeline.jobs import write_output_in_process

    old = gaussian_job(str(tmp_path / "old"), run={"noise_scheme": "v1"})
    write_output_in_process(old)  # the output's manifest says v1
    handle = SamplingHandle.from_config(old.model_copy(update={"run": old.run.model_copy(update={"noise_scheme": "auto"})}))
    stored = read_samples(old.run.output)
    assert np.array_equal(handle.sample(old.run.num_samples).numpy(), stored)
    assert not np.array_equal(handle.sample(old.run.num_samples, noise_scheme="v2").numpy(), stored)
    fresh = SamplingHandle.from_config(gaussian_job(str(tmp_path / "new")))  # no output yet: the default, v2
    assert np.array_equal(fresh.sample(4).numpy(), handle.sample(4, noise_scheme="v2").numpy())
