"""Predictor-corrector sampling: a reverse-SDE predictor step (Euler-Maruyama), then `n_corrector`
Langevin corrector steps at the new time, x <- x + e score + sqrt(2 e) z, with the step size e set
per sample by a signal-to-noise ratio: e = 2 (snr ||z|| / ||score||)^2 (Song et al. 2021,
"Score-Based Generative Modeling through SDEs", Algorithms 2 and 4; `LangevinCorrector` of score_sde,
with norms per sample, not per batch, so a sample does not depend on its batch).

Works with any field (every field provides a score). Noise: the predictor uses the step's draw 0,
corrector move j = 1 .. n_corrector its draw j. The last step to t = 0 is the probability-flow Euler
step (Tweedie's denoiser for sigma fields), with no noise and no corrector.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import SamplerStateError, check_params
from .euler_maruyama import EulerMaruyamaSampler
from .interfaces import Field


class LangevinSampler(EulerMaruyamaSampler):
    """1 + n_corrector network calls per step."""

    name = "langevin"

    def __init__(self, steps: int, *, snr: float = 0.16, n_corrector: int = 1, **step_kwargs: Any) -> None:
        """`step_kwargs`: those of `StepSampler` (time_dist, time_kwargs, dtype, guidance_interval)."""
        super().__init__(steps=steps, **step_kwargs)
        check_params(type(self), dict(steps=steps, snr=snr, n_corrector=n_corrector))
        if not (0.0 < snr < math.inf and n_corrector >= 0):
            raise SamplerStateError(f"{self.name}: needs snr > 0 and n_corrector >= 0, "
                                    f"got snr={snr!r}, n_corrector={n_corrector!r}")
        self.snr, self.n_corrector = float(snr), n_corrector

    def forward(self, net: Field, x: torch.Tensor, t_curr: float, t_next: float, g_net: Field | None = None,
                guidance_scale: float = 1.0, *, noise: Any = None, **net_kwargs: Any) -> torch.Tensor:
        # Song et al. 2021, Algorithm 2: predictor (reverse-diffusion / Euler-Maruyama), then corrector at t_next.
        x = super().forward(net, x, t_curr, t_next, g_net, guidance_scale, noise=noise, **net_kwargs)
        return self.correct(net, x, t_next, g_net, guidance_scale, noise=noise, **net_kwargs)

    def correct(self, net: Field, x: torch.Tensor, t: float, g_net: Field | None = None, guidance_scale: float = 1.0,
                *, noise: Any = None, **net_kwargs: Any) -> torch.Tensor:
        """`n_corrector` Langevin moves of x (N, ...) on p_t (Song et al. 2021, Algorithm 4); move j uses
        `noise(draw=j)`, an N(0, I) draw like x."""
        for j in range(1, self.n_corrector + 1):
            score = self.guided("score", net, g_net, guidance_scale, x, t, **net_kwargs)
            z = noise(draw=j)
            e = 2.0 * (self.snr * z.flatten(1).norm(dim=1) / score.flatten(1).norm(dim=1)) ** 2  # (N,)
            e = e.view(-1, *([1] * (x.dim() - 1)))
            x = x + e * score + (2.0 * e).sqrt() * z
        return x
