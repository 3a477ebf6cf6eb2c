"""The analytic Gaussian model as a job factory: the exact field of N(mu, s^2) data.

`model.factory: pipeline.models.gaussian:build_gaussian` with `kwargs: {interface: edm, mu: 0.5, s: 0.8}`
runs a full job whose exact answer is known, to check a solver's accuracy inside the pipeline.
"""

from __future__ import annotations

from samplers.analytic import GaussianNet


def build_gaussian(interface: str = "flow", mu: float = 0.5, s: float = 0.8) -> GaussianNet:
    """A parameter-free network returning the exact edm / flow / meanflow field of N(mu, s^2)."""
    return GaussianNet(interface, mu, s)
