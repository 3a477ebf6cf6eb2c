"""Interfaces: turn a raw network into the field every integrator takes as `net` / `g_net`."""

from __future__ import annotations

from typing import Any

from .edm import EDMField, edm_precond
from .field import Field
from .flow import FlowField
from .meanflow import MeanFlowField
from .vp_eps import VPEpsField, ddpm_alphas_cumprod

INTERFACES: dict[str, type[Field]] = {
    "flow": FlowField,
    "edm": EDMField,
    "vp_eps": VPEpsField,
    "meanflow": MeanFlowField,
}


def wrap(net: Any, interface: str, **interface_kwargs: Any) -> Field:
    """The field of `net` under `interface` ('flow' | 'edm' | 'vp_eps' | 'meanflow')."""
    if interface not in INTERFACES:
        raise ValueError(f"unknown interface {interface!r}; allowed: {', '.join(INTERFACES)}")
    return INTERFACES[interface](net, **interface_kwargs)


__all__ = [
    "EDMField", "Field", "FlowField", "INTERFACES", "MeanFlowField", "VPEpsField",
    "ddpm_alphas_cumprod", "edm_precond", "wrap",
]
