"""model.autocast: the network runs under torch.autocast; the integrator state and the weights keep their dtypes."""

import pytest
import torch

from pipeline.config import ConfigError
from pipeline.handle import SamplingHandle
from tests.pipeline.jobs import gaussian_job


class LinearFlow(torch.nn.Module):
    """v = W x + b t, recording the dtype its matmul ran in and whether autocast was on."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 4)
        self.seen: list[tuple[torch.dtype, bool]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        self.seen.append((y.dtype, torch.is_autocast_enabled(x.device.type)))
        return y + t[:, None, None]


def build_linear_flow() -> torch.nn.Module:
    return LinearFlow()


def linear_job(tmp_path, **model):
    return gaussian_job(str(tmp_path / "out"), model={"factory": "tests.pipeline.test_autocast:build_linear_flow",
                                                      "kwargs": {}, "interface": "flow", "shape": [3, 4], **model},
                        sampler={"name": "heun", "steps": 4, "time_dist": "uniform"})


@pytest.mark.parametrize("autocast,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_the_network_runs_in_reduced_precision_and_the_state_in_float32(tmp_path, autocast, dtype):
    full = SamplingHandle.from_config(linear_job(tmp_path)).sample(5)
    handle = SamplingHandle.from_config(linear_job(tmp_path, autocast=autocast))
    mixed = handle.sample(5)
    net = handle.net.net.net  # Field -> AutocastNet -> LinearFlow
    assert net.seen and set(net.seen) == {(dtype, True)}
    assert net.linear.weight.dtype == torch.float32 and mixed.dtype == torch.float32
    assert not torch.equal(mixed, full) and torch.allclose(mixed, full, rtol=0, atol=0.1)


def test_autocast_is_checked_against_its_registry(tmp_path):
    assert linear_job(tmp_path).model.autocast is None
    with pytest.raises(ConfigError, match=r"model.autocast: unknown 'float8'; allowed: bf16, fp16"):
        linear_job(tmp_path, autocast="float8")
