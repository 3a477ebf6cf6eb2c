import pytest

import samplers
from tests.samplers.oracle import convergence_order, endpoint_error, start_noise


@pytest.mark.parametrize("interface", ["flow", "edm", "meanflow"])
def test_euler_is_first_order_on_exact_gaussian_field(interface):
    order, errors = convergence_order("euler", interface, [16, 32, 64, 128, 256])
    assert -1.15 < order < -0.85, (order, errors)
    assert errors[-1] < errors[0] / 10


def test_euler_converges_to_exact_endpoint():
    assert endpoint_error("euler", "flow", 2048, start_noise()) < 2e-3


def test_euler_step_is_the_formula():
    net = samplers.wrap(lambda x, t: 2.0 * x, "flow")
    x = start_noise(4, 3)
    out = samplers.EulerSampler(steps=4).forward(net, x, 0.75, 0.5)
    assert (out - (x + (0.5 - 0.75) * 2.0 * x)).abs().max() == 0
