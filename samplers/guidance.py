"""Guidance: out = guide + w * (cond - guide), mixed in the same field.

The guide `g_net` is a weaker network (autoguidance, Karras et al. 2024) or the same network
with the null condition (classifier-free guidance, Ho & Salimans 2022): `null_condition`
builds the latter. Every field quantity is affine in the network output, so mixing velocities,
denoised images or drifts is the same guidance.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from .interfaces import Field


def mix(cond: torch.Tensor, guide: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """guide + w * (cond - guide); w = 1 is `cond`, w = 0 is `guide`."""
    return torch.lerp(guide, cond, guidance_scale)


class _NullCondition(torch.nn.Module):
    """Calls `net` with the conditioning keyword `key` replaced by `null` (same shape)."""

    def __init__(self, net: Any, key: str, null: int) -> None:
        super().__init__()
        self.net, self.key, self.null = net, key, null

    def forward(self, x: torch.Tensor, *times: torch.Tensor, **net_kwargs: Any) -> torch.Tensor:
        cond = net_kwargs.get(self.key)
        net_kwargs[self.key] = (
            torch.full_like(cond, self.null) if cond is not None else torch.full((x.shape[0],), self.null, device=x.device)
        )
        return self.net(x, *times, **net_kwargs)


def null_condition(field: Field, null_label: int, key: str = "class_labels") -> Field:
    """The classifier-free guide: `field` with `net_kwargs[key]` set to `null_label`."""
    guide = copy.copy(field)
    guide.net = _NullCondition(field.net, key, null_label)
    return guide
