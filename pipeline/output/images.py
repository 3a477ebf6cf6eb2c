"""Samples as images: which samples are images, their canonical uint8 form, deterministic PNG bytes.

An image sample has shape (C, H, W) with C = 1 (grayscale) or 3 (RGB). Its canonical uint8 image is
EDM's (``generate.py``): float samples in [-1, 1] become ``(x * 127.5 + 128).clip(0, 255)`` cast to
uint8 (truncation, so round half up of ``(x + 1) * 127.5``); uint8 storage is used as stored. This is
the image every exporter writes and FID features are computed on, so an in-job FID equals the FID of
the exported PNG files. PNG bytes come from Pillow with fixed settings and no metadata chunks: the same
bytes on every run for a given Pillow / zlib.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

PNG_COMPRESS_LEVEL = 6


def is_image_shape(shape: Sequence[int]) -> bool:
    """True for one sample's shape (C, H, W) with C in (1, 3)."""
    return len(shape) == 3 and shape[0] in (1, 3)


def to_uint8(samples: np.ndarray) -> np.ndarray:
    """Canonical uint8 images of stored samples (n, C, H, W): uint8 as is, floats mapped from [-1, 1] as EDM."""
    if samples.dtype == np.uint8:
        return samples
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"image samples must be floating point or uint8, got {samples.dtype}")
    x = samples.astype(np.float32, copy=False) * np.float32(127.5) + np.float32(128)
    return np.clip(x, 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of one uint8 image (C, H, W), C = 1 (mode L) or 3 (RGB); deterministic."""
    from PIL import Image

    assert image.dtype == np.uint8 and is_image_shape(image.shape), f"expected uint8 (1|3, H, W), got {image.dtype} {image.shape}"
    pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def load_image(data: bytes) -> np.ndarray:
    """Image file bytes (PNG, JPEG, ...) -> uint8 (C, H, W): C = 1 for grayscale modes, else 3 (RGB)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img = img.convert("L") if img.mode in ("L", "LA", "I", "I;16", "1") else img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
