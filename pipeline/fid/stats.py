"""Streaming feature statistics and the Frechet distance.

* `FeatureStats` accumulates n, sum f and sum f f^T in float64 (as EDM's `calc_metrics` does), so
  statistics computed on many Ray actors merge exactly on the driver: `total = a + b`.
  `sigma` is the unbiased covariance, equal to `np.cov(features, rowvar=False)`.
* `frechet_distance` is pytorch-fid's `calculate_frechet_distance` in float64:
  ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

References: Heusel et al. 2017 (FID); github.com/mseitzer/pytorch-fid; Karras et al. 2022 (EDM).
"""

from __future__ import annotations

import os
from typing import IO, Any

import numpy as np
from scipy import linalg


class FeatureStats:
    """Mergeable float64 accumulators (n, sum (D,), sum_outer (D, D)) of features [n, D]."""

    def __init__(self, dim: int | None = None):
        self.n = 0
        self.dim: int | None = None
        self.sum: np.ndarray | None = None
        self.sum_outer: np.ndarray | None = None
        if dim is not None:
            self._allocate(dim)

    def _allocate(self, dim: int) -> None:
        """Zero accumulators of dimension D (the dimension is fixed by the first update otherwise)."""
        self.dim = int(dim)
        self.sum = np.zeros(self.dim, np.float64)
        self.sum_outer = np.zeros((self.dim, self.dim), np.float64)

    def update(self, features: Any) -> "FeatureStats":
        """Add features [n, D] (numpy or torch, any float dtype, any device); returns self."""
        if hasattr(features, "detach"):  # a torch.Tensor, on any device
            features = features.detach().to("cpu").double().numpy()
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2:
            raise ValueError(f"features must have shape (n, D), got {f.shape}")
        if self.dim is None:
            self._allocate(f.shape[1])
        if f.shape[1] != self.dim:
            raise ValueError(f"features have dimension {f.shape[1]}, these statistics have {self.dim}")
        self.n += f.shape[0]
        self.sum += f.sum(axis=0)
        self.sum_outer += f.T @ f
        return self

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Add another FeatureStats' accumulators into this one; returns self."""
        if other.dim is None:
            return self
        if self.dim is None:
            self._allocate(other.dim)
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into dimension {self.dim}")
        self.n += other.n
        self.sum += other.sum
        self.sum_outer += other.sum_outer
        return self

    def __add__(self, other: "FeatureStats") -> "FeatureStats":
        """A new FeatureStats holding both."""
        return FeatureStats(self.dim).merge(self).merge(other)

    @property
    def mu(self) -> np.ndarray:
        """Mean feature (D,), float64."""
        if self.n < 1:
            raise ValueError("mean of empty feature statistics")
        return self.sum / self.n

    @property
    def sigma(self) -> np.ndarray:
        """Unbiased covariance (D, D), float64, as np.cov(features, rowvar=False)."""
        if self.n < 2:
            raise ValueError(f"covariance needs at least 2 samples, have {self.n}")
        mu = self.mu
        sigma = (self.sum_outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return (sigma + sigma.T) / 2

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python state (ints, lists of floats): JSON- and pickle-friendly, exact in float64."""
        return {
            "n": int(self.n),
            "dim": self.dim,
            "sum": None if self.sum is None else self.sum.tolist(),
            "sum_outer": None if self.sum_outer is None else self.sum_outer.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "FeatureStats":
        """Inverse of to_dict (also accepts numpy arrays as values)."""
        unknown = set(state) - {"n", "dim", "sum", "sum_outer"}
        if unknown:
            raise ValueError(f"unknown FeatureStats keys {sorted(unknown)}")
        stats = cls(state["dim"])
        if stats.dim is not None:
            stats.n = int(state["n"])
            stats.sum = np.array(state["sum"], dtype=np.float64).reshape(stats.dim)
            stats.sum_outer = np.array(state["sum_outer"], dtype=np.float64).reshape(stats.dim, stats.dim)
        return stats

    def save_npz(self, path_or_file: str | os.PathLike | IO[bytes]) -> None:
        """Write `mu` and `sigma` as a reference .npz (pytorch-fid / EDM format) to a path, URL or file."""
        from .reference import save_reference

        save_reference(path_or_file, self.mu, self.sigma)

    def __repr__(self) -> str:
        return f"FeatureStats(n={self.n}, dim={self.dim})"


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2): ||mu1-mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, "
                         f"sigma2 {sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # Product might be almost singular: regularise both covariances, as pytorch-fid does.
        offset = np.eye(d) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3:
            raise ValueError(f"matrix square root has a large imaginary component ({imag:.3g}); "
                             "covariances are not positive semi-definite or too few samples")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
