"""Preflight (pipeline/run/preflight.py): the sampler against the interface without model code, and one
forward pass of the network and guide on one sample on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.config import ConfigError, load_config
from pipeline.run.sampling import build_sampler
from pipeline.run.preflight import check_forward, check_sampler
from tests.pipeline.jobs import gaussian_job

CALLS: list[torch.dtype] = []


class Net(torch.nn.Module):
    """The exact Gaussian edm network, or an output of another `kind`: 'int', 'raise', 'wide' (one more column)."""

    def __init__(self, kind: str = "ok") -> None:
        super().__init__()
        from pipeline.models.gaussian import build_gaussian

        self.net, self.kind = build_gaussian("edm"), kind

    def forward(self, x: torch.Tensor, *times: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        CALLS.append(x.dtype)
        if self.kind == "raise":
            raise RuntimeError("boom")
        out = self.net(x, *times)
        if self.kind == "int":
            return out.long()
        return torch.nn.functional.pad(out, (0, 1)) if self.kind == "wide" else out


def net(kind: str = "ok") -> Net:
    """Factory: `tests.pipeline.run.test_preflight:net`."""
    return Net(kind)


def job(tmp_path, *, kind: str = "ok", guide: str | None = None, **model: Any) -> Any:
    model = {"factory": "tests.pipeline.run.test_preflight:net", "kwargs": {"kind": kind}, **model}
    sampler = {}
    if guide is not None:
        model["guide"] = {"factory": "tests.pipeline.run.test_preflight:net", "kwargs": {"kind": guide},
                          "interface": "edm", "shape": [3, 4]}
        sampler["guidance_scale"] = 2.0
    return gaussian_job(str(tmp_path / "out"), model=model, sampler=sampler)


def test_a_good_network_and_guide_pass(tmp_path):
    cfg = job(tmp_path, guide="ok")
    CALLS.clear()
    check_forward(cfg, build_sampler(cfg))
    assert len(CALLS) == 2  # the network and the guide, once each


@pytest.mark.parametrize("kind, guide, match", [
    ("wide", None, r"^model: the network's output on one sample at t=80 has shape \[1, 3, 5\], expected \[1, 3, 4\]"),
    ("ok", "wide", r"^model.guide: the network's output on one sample at t=80 has shape \[1, 3, 5\]"),
    ("int", None, r"^model: the network returned a torch.int64 tensor on one sample at t=80; expected a floating-point"),
    ("raise", None, r"^model: one forward pass on one sample at t=80 on the driver's CPU failed: RuntimeError: boom "
                    r"\(set model.preflight=false to skip this check\)$"),
])
def test_a_bad_output_is_one_config_error_naming_the_network(tmp_path, kind, guide, match):
    cfg = job(tmp_path, kind=kind, guide=guide)
    with pytest.raises(ConfigError, match=match):
        check_forward(cfg, build_sampler(cfg))


def test_preflight_false_runs_nothing(tmp_path):
    cfg = job(tmp_path, kind="raise", preflight=False)
    CALLS.clear()
    check_forward(cfg, build_sampler(cfg))
    assert CALLS == []


def test_float16_networks_run_it_in_float32_on_the_cpu(tmp_path):
    cfg = job(tmp_path, dtype="float16")
    CALLS.clear()
    check_forward(cfg, build_sampler(cfg))
    assert CALLS == [torch.float32]


def test_the_demo_passes_with_its_classifier_free_guide():
    cfg = load_config(str(Path(__file__).resolve().parents[3] / "configs" / "demo.yaml"))
    sampler = build_sampler(cfg)
    check_sampler(cfg, sampler)
    check_forward(cfg, sampler)


def test_check_sampler_imports_no_factory(tmp_path):
    cfg = gaussian_job(str(tmp_path / "out"), model={"factory": "no_such_module_anywhere:build", "interface": "flow"},
                       sampler={"name": "euler_jump", "time_dist": "uniform"})
    with pytest.raises(ConfigError, match=r"^sampler.name='euler_jump' cannot run with model.interface='flow'"):
        check_sampler(cfg, build_sampler(cfg))


def test_a_guidance_interval_that_holds_no_time_of_the_grid_is_refused(tmp_path):
    """guidance_interval [5, 10] on a flow job (t in [0, 1]), or [0.3, 0.45] between the grid's 0.25 and 0.5: the guide
    was never evaluated, so the samples were exactly the unguided ones, recorded with guidance_scale 3."""
    def cfg(interval, **sampler):
        return gaussian_job(str(tmp_path / "out"), model={"kwargs": {"interface": "flow"}, "interface": "flow",
                                                          "num_classes": 3},
                            run={"labels": "balanced"},
                            sampler={"name": "euler", "steps": 4, "time_dist": "uniform", "guidance_scale": 3.0,
                                     "guidance_interval": interval, **sampler})

    for interval in ([5.0, 10.0], [0.3, 0.45], [-2.0, -1.0]):
        with pytest.raises(ConfigError, match=rf"sampler.guidance_interval=\[{interval[0]}, {interval[1]}\].*no time"):
            check_sampler(cfg(interval), build_sampler(cfg(interval)))
    for interval in ([0.5, 0.6], [0.2, 0.3], [0.9, 10.0]):  # a grid time (1, 0.75, 0.5, 0.25, 0) inside: guided
        check_sampler(cfg(interval), build_sampler(cfg(interval)))
    unguided = cfg([5.0, 10.0], guidance_scale=1.0)
    check_sampler(unguided, build_sampler(unguided))
