"""Reference statistics and FID reports.

Reference statistics are `.npz` files with `mu` (D,) and `sigma` (D, D): the format written by
pytorch-fid (`--save-stats`) and EDM (`fid.py ref`), or EDM2's `.pkl` (`calculate_metrics.py ref`:
{'fid': {'mu', 'sigma'}, 'fd_dinov2': {...}}; the Inception 'fid' entry is used), read by an unpickler
that builds only NumPy arrays and plain containers, so no code runs. Paths may be fsspec URLs. The digits
reference ships with the package (`default_reference("digits")`). A job's FID report is
`fid.json` beside its manifest.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from typing import IO, Any

import numpy as np

from ..output.fs import put_atomic
from ..output.layout import side_file
from ..redact import redact_url
from .stats import FeatureStats, frechet_distance

REPORT_NAME = "fid.json"


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
    if data[:1] == b"\x80":  # a pickle (protocol 2+): EDM2's reference statistics
        try:
            arrays = edm2_stats(_ArraysOnly(io.BytesIO(data)).load(), path)
        except (pickle.UnpicklingError, EOFError) as e:
            raise ValueError(f"{path}: not a reference .pkl of arrays ({e})") from None
    else:
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


class _ArraysOnly(pickle.Unpickler):
    """Unpickles NumPy arrays, dtypes and plain containers only; any other class is refused, never imported."""

    ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}
    ALLOWED |= {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refuses {module}.{name}; only NumPy arrays are read")
        return super().find_class(module, name)


def edm2_stats(obj: Any, path: str) -> dict[str, Any]:
    """{'mu', 'sigma'} of an EDM2 reference pickle: its 'fid' (Inception) entry, or a top-level mu/sigma."""
    if isinstance(obj, dict) and isinstance(obj.get("fid"), dict):
        obj = obj["fid"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: a reference .pkl must hold a dict, got {type(obj).__name__}")
    return obj


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


DIGITS_REFERENCE_FILE = "digits_ref.npz"


def default_reference(extractor: str) -> str | None:
    """The shipped reference .npz for an extractor (digits: all 1797 scikit-learn digits), else None."""
    if extractor == "digits":
        from ..models.digits import shipped_weights_path

        return shipped_weights_path(DIGITS_REFERENCE_FILE)
    return None


def write_digits_reference(path: str | os.PathLike, weights: str | None = None) -> FeatureStats:
    """Compute digits-extractor statistics of all 1797 digits and save them as a reference .npz (needs scikit-learn)."""
    from ..models.digits import load_digits_data
    from .features import DigitsExtractor, compute_stats

    images, _ = load_digits_data()
    stats = compute_stats(DigitsExtractor(weights), images)
    stats.save_npz(path)
    return stats


def reference_url(extractor: str, ref: str | None) -> str:
    """The reference .npz: `ref`, else the one shipped for `extractor` (digits)."""
    url = ref or default_reference(extractor)
    if url is None:
        raise ValueError(f"metrics.fid.ref is required for extractor {extractor!r} (no reference ships with it); "
                         "build one with `seedshard ref-stats`")
    return url


def fid_report(stats: FeatureStats, extractor: str, ref: str | None) -> dict[str, Any]:
    """{'fid', 'extractor', 'reference' (its URL without userinfo or query), 'num_samples'} of merged statistics."""
    url = reference_url(extractor, ref)
    return {"fid": fid_from_stats(stats, url), "extractor": extractor, "reference": redact_url(url), "num_samples": stats.n}


def write_report(fs: Any, root: str, report: dict[str, Any]) -> None:
    """Atomically write the report as `fid.json` among the side files of the output at `root`."""
    put_atomic(fs, side_file(fs, root, REPORT_NAME), (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
