"""Guidance: out = guide + w * (cond - guide), mixed in the same field.

The guide `g_net` is a weaker network (autoguidance, Karras et al. 2024) or the same network
with the null condition (classifier-free guidance, Ho & Salimans 2022): `null_condition`
builds the latter for class labels; `guide_kwargs` give the guide other keywords than the network
(a negative prompt's embeddings in place of the prompt's). Every field quantity is affine in the network output, so mixing velocities,
denoised images or drifts is the same guidance. `GuidedField` composes the network, the guide,
the guidance interval and the bound `net_kwargs` once; integrators see only it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from .interfaces import Field


def mix(cond: torch.Tensor, guide: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """guide + w * (cond - guide); w = 1 is `cond`, w = 0 is `guide`."""
    return torch.lerp(guide, cond, guidance_scale)


class GuidedField:
    """A field with guidance and `net_kwargs` bound: each network quantity (velocity, denoise, eps, score,
    sde_drift, average_velocity) is mix(cond, guide, w), the guide evaluated only where w != 1 and the last
    time argument lies in `interval` (lo, hi); everything else (alpha, sigma, diffusion, prior_scale,
    t_max_allowed, ...) is the field's own. The guide sees `net_kwargs` updated by `guide_kwargs`."""

    def __init__(self, net: Field, g_net: Field | None = None, guidance_scale: float = 1.0, *,
                 interval: tuple[float, float] | None = None, net_kwargs: dict[str, Any] | None = None,
                 guide_kwargs: dict[str, Any] | None = None) -> None:
        self.net, self.guidance_scale, self.interval = net, guidance_scale, interval
        self.g_net = None if guidance_scale == 1.0 else g_net
        self.net_kwargs = dict(net_kwargs or {})
        self.guide_kwargs = {**self.net_kwargs, **(guide_kwargs or {})}
        # The forward process is the field's own; bound here, as the hot loop reads it every step.
        self.alpha, self.sigma, self.dalpha, self.dsigma = net.alpha, net.sigma, net.dalpha, net.dsigma
        self.half_log_snr, self.prior_scale, self.diffusion = net.half_log_snr, net.prior_scale, net.diffusion

    def guided(self, quantity: str, x: torch.Tensor, *times: float) -> torch.Tensor:
        """`quantity` of the network at x (N, ...) and `times`, guided; shaped like x."""
        out = getattr(self.net, quantity)(x, *times, **self.net_kwargs)
        if self.g_net is None:
            return out
        if self.interval is not None and not self.interval[0] <= times[-1] <= self.interval[1]:
            return out
        return mix(out, getattr(self.g_net, quantity)(x, *times, **self.guide_kwargs), self.guidance_scale)

    def velocity(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.guided("velocity", x, t)

    def denoise(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.guided("denoise", x, t)

    def eps(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.guided("eps", x, t)

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.guided("score", x, t)

    def sde_drift(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.guided("sde_drift", x, t)

    def average_velocity(self, x: torch.Tensor, r: float, t: float) -> torch.Tensor:
        return self.guided("average_velocity", x, r, t)

    def denoise_and_raw_eps(self, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0, eps) of a clipping VP field (`VPField.denoise_and_raw_eps`), each guided."""
        x0, eps = self.net.denoise_and_raw_eps(x, t, **self.net_kwargs)
        if self.g_net is None or (self.interval is not None and not self.interval[0] <= t <= self.interval[1]):
            return x0, eps
        g_x0, g_eps = self.g_net.denoise_and_raw_eps(x, t, **self.guide_kwargs)
        return mix(x0, g_x0, self.guidance_scale), mix(eps, g_eps, self.guidance_scale)

    def __getattr__(self, name: str) -> Any:  # the other attributes of `net` (t_max_allowed, interface, ...)
        if name == "net":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.net, name)

    def __repr__(self) -> str:
        return f"GuidedField({self.net!r}, g_net={self.g_net!r}, guidance_scale={self.guidance_scale})"


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
