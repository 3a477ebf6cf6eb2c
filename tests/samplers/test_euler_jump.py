import pytest
import torch

import samplers
from samplers.analytic import GaussianNet
from tests.samplers.oracle import DATA, start_noise


@pytest.mark.parametrize("steps", [1, 3])
def test_euler_jump_reproduces_exact_map(steps):
    net = GaussianNet("meanflow", DATA.mu, DATA.s)
    x1 = start_noise(64, 3)
    out = samplers.build("euler_jump", steps=steps, dtype="float64").integrate(samplers.wrap(net, "meanflow"), x1)
    assert torch.allclose(out, DATA.flow_map(x1, 1.0, 0.0), rtol=0, atol=1e-12)
    assert net.calls == steps


def test_one_step_is_z1_minus_u():
    calls = []

    def u(x, r, t):
        calls.append((r.clone(), t.clone()))
        return torch.full_like(x, 0.25)

    out = samplers.build("euler_jump", steps=1).integrate(samplers.wrap(u, "meanflow"), torch.ones(2, 3))
    assert torch.equal(out, torch.full((2, 3), 0.75))
    (r, t), = calls
    assert torch.equal(r, torch.zeros(2)) and torch.equal(t, torch.ones(2))


@pytest.mark.parametrize("interface", ["flow", "edm"])
def test_non_meanflow_field_is_a_clear_error(interface):
    with pytest.raises(TypeError, match="needs a 'meanflow' field"):
        samplers.build("euler_jump", steps=1).integrate(samplers.wrap(GaussianNet(interface), interface), torch.zeros(2, 3))
