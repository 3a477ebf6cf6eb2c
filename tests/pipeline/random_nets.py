"""Factories whose networks depend on more than their config, as users' factories often do.

Importing this module seeds torch's global RNG from the OS in each process (as a training library or
a `torch.seed()` call would), so a randomly initialised factory builds another network in every
process unless the pipeline seeds it. `scale_file` reads a non-persistent buffer from a file, which
a state dict does not hold (like a factory that loads weights itself from a changing file).
"""

from __future__ import annotations

import os

import torch

torch.manual_seed(int.from_bytes(os.urandom(8), "little"))


class RandomInitNet(torch.nn.Module):
    """The exact Gaussian edm field plus 0.01 * scale * a randomly initialised Linear(4, 4) of x (shape [3, 4])."""

    def __init__(self, scale_file: str | None = None) -> None:
        super().__init__()
        from pipeline.models.gaussian import build_gaussian

        self.net = build_gaussian("edm")
        self.mix = torch.nn.Linear(4, 4)
        scale = float(open(scale_file).read()) if scale_file else 1.0
        self.register_buffer("scale", torch.tensor(scale), persistent=False)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, sigma) + 0.01 * self.scale * self.mix(x)


def random_init(**kwargs) -> RandomInitNet:
    """Factory of RandomInitNet (`model.factory: tests.pipeline.random_nets:random_init`)."""
    return RandomInitNet(**kwargs)
