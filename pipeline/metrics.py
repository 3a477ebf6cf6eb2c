"""FID: streaming feature statistics, the Frechet distance, reference files and feature extractors.

* `FeatureStats` accumulates n, sum f and sum f f^T in float64 (as EDM's `calc_metrics` does), so
  statistics computed on many Ray actors merge exactly on the driver: `total = a + b`.
  `sigma` is the unbiased covariance, equal to `np.cov(features, rowvar=False)`.
* Reference statistics are `.npz` files with `mu` (D,) and `sigma` (D, D): the format written by
  pytorch-fid (`--save-stats`) and EDM (`fid.py ref`). Paths may be fsspec URLs. The digits
  reference ships with the package (`default_reference("digits")`).
* `frechet_distance` is pytorch-fid's `calculate_frechet_distance` in float64:
  ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).
* Extractors map images [N, C, H, W] to features [N, D] and expose `.dim`:
  `digits` (the demo's 8x8 classifier, D = 64) and `inception` (Inception-v3 pool3, D = 2048,
  the standard FID network, from a user-supplied weights file). Images are floats in [-1, 1]
  (the samplers' convention) or uint8 in [0, 255].

References: Heusel et al. 2017 (FID); github.com/mseitzer/pytorch-fid; Karras et al. 2022 (EDM).
"""

from __future__ import annotations

import io
import os
from typing import IO, Any, Callable

import numpy as np
import torch
from scipy import linalg
from torch import Tensor

# ----------------------------------------------------------------------------------------------
# Streaming statistics


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

    def update(self, features: np.ndarray | Tensor) -> "FeatureStats":
        """Add features [n, D] (numpy or torch, any float dtype, any device); returns self."""
        if isinstance(features, Tensor):
            features = features.detach().to("cpu", torch.float64).numpy()
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
        save_reference(path_or_file, self.mu, self.sigma)

    def __repr__(self) -> str:
        return f"FeatureStats(n={self.n}, dim={self.dim})"


# ----------------------------------------------------------------------------------------------
# Reference files


def save_reference(path_or_file: str | os.PathLike | IO[bytes], mu: np.ndarray, sigma: np.ndarray) -> None:
    """Write mu (D,) and sigma (D, D) as an .npz to a local path, fsspec URL or binary file object."""
    buf = io.BytesIO()
    np.savez(buf, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64))
    if hasattr(path_or_file, "write"):
        path_or_file.write(buf.getvalue())
        return
    import fsspec

    with fsspec.open(os.fspath(path_or_file), "wb") as f:
        f.write(buf.getvalue())


def load_reference(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) in float64 from a reference .npz at a local path or fsspec URL."""
    import fsspec

    path = os.fspath(path)
    with fsspec.open(path, "rb") as f:
        data = f.read()
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # noqa: BLE001 - numpy raises several types for a bad file
        raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__})") from e
    missing = [k for k in ("mu", "sigma") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; a reference .npz needs 'mu' and 'sigma', "
                         f"found {sorted(arrays)}")
    mu, sigma = arrays["mu"], arrays["sigma"]
    for name, a in (("mu", mu), ("sigma", sigma)):
        if not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"{path}: '{name}' has non-numeric dtype {a.dtype}")
    if mu.ndim != 1:
        raise ValueError(f"{path}: 'mu' must have shape (D,), got {mu.shape}")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: 'sigma' must have shape (D, D) = {(mu.shape[0],) * 2} to match 'mu', "
                         f"got {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{path}: 'mu' or 'sigma' contains NaN or inf")
    return mu.astype(np.float64), sigma.astype(np.float64)


# ----------------------------------------------------------------------------------------------
# Frechet distance


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


def fid_from_stats(stats: FeatureStats, reference: str | os.PathLike | FeatureStats) -> float:
    """FID of accumulated statistics against a reference .npz path/URL or another FeatureStats."""
    if isinstance(reference, FeatureStats):
        mu_ref, sigma_ref = reference.mu, reference.sigma
    else:
        mu_ref, sigma_ref = load_reference(reference)
    if mu_ref.shape[0] != stats.dim:
        raise ValueError(f"reference {reference} has feature dimension {mu_ref.shape[0]}, "
                         f"the samples' statistics have {stats.dim}")
    return frechet_distance(stats.mu, stats.sigma, mu_ref, sigma_ref)


# ----------------------------------------------------------------------------------------------
# Feature extractors


def to_unit_range(x: Tensor) -> Tensor:
    """Images to float32 in [-1, 1]: uint8 in [0, 255] is rescaled, floats are taken as already in [-1, 1]."""
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1
    return x.float()


class DigitsExtractor:
    """Penultimate features [N, 64] of the shipped digits classifier; input [N, 1, 8, 8]."""

    def __init__(self, weights: str | None = None, device: str | torch.device = "cpu", batch_size: int = 4096):
        from pipeline.models.digits_classifier import build_digits_classifier

        self.device = torch.device(device)
        self.net = build_digits_classifier(weights).to(self.device)
        self.dim = self.net.dim
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> Tensor:
        """x: [N, 1, 8, 8] in [-1, 1] (or uint8) -> features [N, 64] float32 on self.device."""
        x = torch.as_tensor(x)
        if x.ndim != 4 or x.shape[1:] != (1, 8, 8):
            raise ValueError(f"the digits extractor takes images of shape [N, 1, 8, 8], got {tuple(x.shape)}")
        out = [self.net.features(to_unit_range(b.to(self.device))) for b in x.split(self.batch_size)]
        return torch.cat(out) if out else torch.empty(0, self.dim, device=self.device)


class InceptionExtractor:
    """Inception-v3 pool3 features [N, 2048] (pytorch-fid's FID network) from a local or fsspec weights file."""

    def __init__(self, weights: str, device: str | torch.device = "cpu", batch_size: int = 64):
        from pipeline.models.inception import build_fid_inception

        self.device = torch.device(device)
        self.net = build_fid_inception(weights).to(self.device)
        self.dim = 2048
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> Tensor:
        """x: [N, C in {1, 3}, H, W] in [-1, 1] (or uint8); resized to 299x299 bilinear -> [N, 2048] float32."""
        x = torch.as_tensor(x)
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"the inception extractor takes images [N, 1 or 3, H, W], got {tuple(x.shape)}")
        out = []
        for b in x.split(self.batch_size):
            b = to_unit_range(b.to(self.device))
            if b.shape[1] == 1:
                b = b.repeat(1, 3, 1, 1)  # grayscale -> RGB, as PIL's convert('RGB') in pytorch-fid
            out.append(self.net.pool3(b))
        return torch.cat(out) if out else torch.empty(0, self.dim, device=self.device)


EXTRACTORS: dict[str, Callable[..., Any]] = {
    "digits": DigitsExtractor,
    "inception": InceptionExtractor,
}


def build_extractor(name: str, **kwargs) -> DigitsExtractor | InceptionExtractor:
    """A feature extractor by registry name (`digits`, `inception`), e.g. build_extractor('inception', weights=url)."""
    if name not in EXTRACTORS:
        raise ValueError(f"unknown feature extractor {name!r}; known: {sorted(EXTRACTORS)}")
    return EXTRACTORS[name](**kwargs)


DIGITS_REFERENCE_FILE = "digits_ref.npz"


def default_reference(extractor: str) -> str | None:
    """The shipped reference .npz for an extractor (digits: all 1797 scikit-learn digits), else None."""
    if extractor == "digits":
        from pipeline.models.digits import shipped_weights_path

        return shipped_weights_path(DIGITS_REFERENCE_FILE)
    return None


def write_digits_reference(path: str | os.PathLike, weights: str | None = None) -> FeatureStats:
    """Compute digits-extractor statistics of all 1797 digits and save them as a reference .npz (needs scikit-learn)."""
    from pipeline.models.digits import load_digits_data

    images, _ = load_digits_data()
    stats = compute_stats(DigitsExtractor(weights), images)
    stats.save_npz(path)
    return stats


def compute_stats(
    extractor: Callable[[Tensor], Tensor], images: Tensor | np.ndarray, batch_size: int = 1024
) -> FeatureStats:
    """FeatureStats of extractor(images) for images [N, C, H, W], processed in batches."""
    images = torch.as_tensor(images)
    stats = FeatureStats(extractor.dim if hasattr(extractor, "dim") else None)
    for b in images.split(batch_size):
        stats.update(extractor(b))
    return stats
