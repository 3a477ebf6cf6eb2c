"""A PNG grid of the first samples of an output: the quickest look at what a job made."""

from __future__ import annotations

import math

import numpy as np

from .output.reader import read_samples

GRID_NAME = "grid.png"


def to_images(samples: np.ndarray, dtype: str) -> np.ndarray:
    """Stored samples (n, C, H, W) -> uint8 images (n, H, W, C); floats are mapped from [-1, 1]."""
    if samples.ndim != 4 or samples.shape[1] not in (1, 3):
        raise ValueError(f"a grid needs image samples of shape (C, H, W) with C in (1, 3), got {samples.shape[1:]}")
    if dtype != "uint8":
        samples = np.clip(np.rint((samples.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return samples.transpose(0, 2, 3, 1)


def save_grid(url: str, out: str, n: int = 100, nrow: int | None = None, min_size: int = 32,
              storage_options: dict | None = None) -> tuple[int, int]:
    """Write the first n samples of `url` as a PNG grid (nearest upscaling to >= min_size px); returns (rows, cols)."""
    from PIL import Image

    from .output.fs import open_output
    from .output.manifest import read_manifest

    fs, root = open_output(url, storage_options, create=False)
    manifest = read_manifest(fs, root)
    if manifest is None:
        raise FileNotFoundError(f"{url}: no manifest.json (not a seedshard output)")
    total = sum(s.rows for s in manifest.shards)
    images = to_images(read_samples(url, list(range(min(n, total))), storage_options=storage_options),
                       manifest.schema_["dtype"])
    cols = nrow or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    h, w, c = images.shape[1:]
    pad = 1
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for k, img in enumerate(images):
        r, q = divmod(k, cols)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = img
    scale = max(1, math.ceil(min_size / h))
    image = Image.fromarray(canvas.squeeze(-1) if c == 1 else canvas)
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    import fsspec

    with fsspec.open(out, "wb", **(storage_options or {})) as f:
        image.save(f, format="PNG")
    return rows, cols
