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

import dataclasses
import math
from typing import Any

import torch

from .base import SamplerStateError
from .euler_maruyama import EulerMaruyamaSampler
from .guidance import GuidedField


@dataclasses.dataclass(kw_only=True)
class LangevinSampler(EulerMaruyamaSampler):
    """1 + n_corrector network calls per step."""

    name = "langevin"
    snr: float = 0.16
    n_corrector: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0.0 < self.snr < math.inf and self.n_corrector >= 0):
            raise SamplerStateError(f"{self.name}: needs snr > 0 and n_corrector >= 0, "
                                    f"got snr={self.snr!r}, n_corrector={self.n_corrector!r}")

    def forward(self, net: GuidedField, x: torch.Tensor, t_curr: float, t_next: float, *, noise: Any = None,
                history: dict[str, Any] | None = None) -> torch.Tensor:
        # Song et al. 2021, Algorithm 2: predictor (reverse-diffusion / Euler-Maruyama), then corrector at t_next.
        x = super().forward(net, x, t_curr, t_next, noise=noise, history=history)
        return self.correct(net, x, t_next, noise=noise)

    def correct(self, net: GuidedField, x: torch.Tensor, t: float, *, noise: Any = None) -> torch.Tensor:
        """`n_corrector` Langevin moves of x (N, ...) on p_t (Song et al. 2021, Algorithm 4); move j uses
        `noise(draw=j)`, an N(0, I) draw like x."""
        for j in range(1, self.n_corrector + 1):
            score = net.score(x, t)
            z = noise(draw=j)
            e = 2.0 * (self.snr * z.flatten(1).norm(dim=1) / score.flatten(1).norm(dim=1)) ** 2  # (N,)
            e = e.view(-1, *([1] * (x.dim() - 1)))
            x = x + e * score + (2.0 * e).sqrt() * z
        return x
