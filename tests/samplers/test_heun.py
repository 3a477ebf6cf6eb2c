import pytest
import torch

import samplers
from samplers.analytic import GaussianNet
from tests.samplers.oracle import convergence_order, start_noise


@pytest.mark.parametrize("interface,steps", [("flow", [8, 16, 32, 64, 128]), ("edm", [16, 32, 64, 128, 256])])
def test_heun_is_second_order_on_exact_gaussian_field(interface, steps):
    order, errors = convergence_order("heun", interface, steps)
    assert -2.4 < order < -1.8, (order, errors)


@pytest.mark.parametrize("steps", [1, 2, 7])
def test_heun_uses_2_steps_minus_1_network_calls(steps):
    net = GaussianNet("flow")
    samplers.HeunSampler(steps=steps).integrate(samplers.wrap(net, "flow"), start_noise(8, 2).float())
    assert net.calls == 2 * steps - 1


def test_heun_with_one_step_is_euler():
    field = samplers.wrap(GaussianNet("edm"), "edm")
    x = start_noise(8, 2) * 80.0
    kw = dict(steps=1, dtype="float64", time_dist="karras")
    assert torch.equal(samplers.HeunSampler(**kw).integrate(field, x), samplers.EulerSampler(**kw).integrate(field, x))
