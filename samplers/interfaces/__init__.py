"""Interfaces: turn a raw network into the field every integrator takes as `net` / `g_net`."""

from __future__ import annotations

from typing import Any

from .. import names
from .coverage import grid_coverage_warning
from .edm import EDMField, edm_precond
from .field import Field
from .flow import FlowField
from .meanflow import MeanFlowField
from .vp import VPField, ddpm_alphas_cumprod, threshold_x0
from .vp_eps import VPEpsField
from .vp_v import VPVField
from .vp_x0 import VPX0Field

INTERFACES: dict[str, type[Field]] = names.resolve(names.INTERFACES, "interface")


def wrap(net: Any, interface: str, **interface_kwargs: Any) -> Field:
    """The field of `net` under `interface` ('flow' | 'edm' | 'vp_eps' | 'vp_v' | 'vp_x0' | 'meanflow')."""
    if interface not in INTERFACES:
        raise ValueError(f"unknown interface {interface!r}; allowed: {', '.join(INTERFACES)}")
    return INTERFACES[interface](net, **interface_kwargs)


__all__ = [
    "EDMField", "Field", "FlowField", "INTERFACES", "MeanFlowField", "VPEpsField", "VPField", "VPVField", "VPX0Field",
    "ddpm_alphas_cumprod", "edm_precond", "grid_coverage_warning", "threshold_x0", "wrap",
]
