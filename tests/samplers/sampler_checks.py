"""Checks every new sampler shares: save/load and batch-layout determinism, and the exact end moments
of a stochastic sampler on 1-D Gaussian data (its discretisation bias, computed, not estimated)."""

from __future__ import annotations

import json
import math

import torch

import samplers
from samplers.analytic import GaussianNet
from tests.samplers.oracle import DATA


def field(interface: str) -> samplers.Field:
    return samplers.wrap(GaussianNet(interface, DATA.mu, DATA.s), interface)


def assert_save_load_bitwise(sampler: samplers.StepSampler, net: samplers.Field, shape=(4,)) -> None:
    """from_state(save()) through plain JSON samples the same bytes."""
    rebuilt = samplers.from_state(json.loads(json.dumps(sampler.save())))
    assert type(rebuilt) is type(sampler) and rebuilt.save() == sampler.save()
    a = sampler.sample(6, "cpu", net=net, shape=shape, seed=11, start_index=4)
    b = rebuilt.sample(6, "cpu", net=net, shape=shape, seed=11, start_index=4)
    assert torch.equal(a, b)


def assert_rows_independent_of_batch(sampler: samplers.StepSampler, net: samplers.Field, shape=(4,)) -> None:
    """Rows 3..7 of a batch of 8 equal a batch of 5 starting at index 3, to float rounding: the noise of an index
    never depends on the batch, but vectorised float32 kernels may round a batch's tail differently (CPU vector
    width), so only a few ulps are allowed, far below what a wrong noise draw changes."""
    full = sampler.sample(8, "cpu", net=net, shape=shape, seed=7, start_index=0)
    part = sampler.sample(5, "cpu", net=net, shape=shape, seed=7, start_index=3)
    eps = torch.finfo(part.dtype).eps
    torch.testing.assert_close(full[3:], part, rtol=16 * eps, atol=16 * eps)


class BasisNoise:
    """Stands in for `SampleNoise` on (n, 1) states: row 2 + k * draws + j gets 1 for draw j of step k,
    every other row and draw gets 0."""

    def __init__(self, draws: int) -> None:
        self.draws = draws

    def step(self, k: int, like: torch.Tensor, draw: int = 0) -> torch.Tensor:
        out = torch.zeros_like(like)
        out[2 + k * self.draws + draw] = 1.0
        return out


def exact_moments(sampler: samplers.StepSampler, net: samplers.Field, draws: int = 1) -> tuple[float, float]:
    """Mean and variance of the sampler's output for x_T ~ N(0, prior^2), exactly.

    On the exact field of Gaussian data, each step of an affine sampler (Euler-Maruyama, EDM churn, DDIM) is
    affine in x and in the step's noise, so x_0 = A x_T + B + sum_k C_k z_k: one run on the rows
    [x_T = 0, x_T = 1, one unit noise each] gives B, A and the C_k, hence E x_0 = B and
    Var x_0 = A^2 prior^2 + sum C_k^2. (The sample noise is standard normal and independent per draw.)
    """
    n = 2 + sampler.steps * draws
    x = torch.zeros(n, 1, dtype=torch.float64)
    x[1] = 1.0
    out = sampler.integrate(net, x, noise=BasisNoise(draws)).flatten().double()
    B, A, C = out[0], out[1] - out[0], out[2:] - out[0]
    prior = net.prior_scale(float(sampler.sample_t()[0]))
    return B.item(), (A**2 * prior**2 + (C**2).sum()).item()


def standard_errors(n: int, s: float) -> tuple[float, float]:
    """(se of the sample mean, se of the sample variance) of n i.i.d. N(., s^2) draws."""
    return s / math.sqrt(n), s**2 * math.sqrt(2.0 / (n - 1))
