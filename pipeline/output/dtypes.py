"""Stored sample dtypes: float32, float16, or uint8 images mapped from [-1, 1] as in EDM.

uint8: ``clip(round((x + 1) * 127.5), 0, 255)`` (round half to even); read back as ``x / 127.5 - 1``.
"""

from __future__ import annotations

import numpy as np

SAMPLE_DTYPES = ("float32", "float16", "uint8")


def _check(dtype: str) -> None:
    if dtype not in SAMPLE_DTYPES:
        raise ValueError(f"unknown sample dtype {dtype!r}; allowed: {', '.join(SAMPLE_DTYPES)}")


def to_stored(samples: np.ndarray, dtype: str) -> np.ndarray:
    """Convert float samples (N, *shape) to the stored dtype (uint8: [-1, 1] -> [0, 255])."""
    _check(dtype)
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"samples must be floating point, got {samples.dtype}")
    if dtype != "uint8":
        with np.errstate(over="ignore"):  # overflow gives inf; the worker refuses such a shard (check_stored)
            return samples.astype(dtype, copy=False)
    x = samples.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("samples contain NaN or inf; cannot store them as uint8")
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def from_stored(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Inverse of ``to_stored``: float32 samples (uint8: x / 127.5 - 1)."""
    _check(dtype)
    if dtype == "uint8":
        return arr.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return arr.astype(np.float32, copy=False)
