"""Sources of images for FID statistics, split into chunks that Ray tasks featurise.

A source is a seedshard output (its manifest's shards), a directory or fsspec folder of image
files, a .zip of images, or an array file (.npy, .npz, .pt). `image_chunks` splits one into
chunks and `chunk_stats` computes the FeatureStats of one chunk (see `job.fan_out_stats`).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..output.codecs import format_of
from ..output.fs import join_path, open_output
from ..output.images import load_image as _load_image
from ..output.manifest import read_manifest
from ..output.shards import decode_shard
from .extractors import build_extractor
from .features import features_stats
from .stats import FeatureStats

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
NPZ_IMAGE_KEYS = ("images", "x", "arr_0")  # arr_0: ADM's sample batches (labels in arr_1), `seedshard export --to npz`


def _as_nchw(arr: np.ndarray, where: str) -> np.ndarray:
    """(N, C, H, W) from (N, C, H, W) or (N, H, W, C) with C in (1, 3), or (N, H, W)."""
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"{where}: expected images (N, C, H, W) or (N, H, W, C), got shape {arr.shape}")
    if arr.shape[1] not in (1, 3) and arr.shape[-1] in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.shape[1] not in (1, 3):
        raise ValueError(f"{where}: images need 1 or 3 channels, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def load_array_file(path: str) -> np.ndarray:
    """Images from a .npy / .npz (key 'images', 'x', 'arr_0' as ADM's and `seedshard export --to npz` write it, or
    the only array) / .pt (a tensor, loaded weights_only)."""
    from ..models.checkpoint import read_bytes

    data = read_bytes(path)
    if path.endswith(".npy"):
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    elif path.endswith(".npz"):
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            named = [k for k in NPZ_IMAGE_KEYS if k in z]
            keys = named[:1] or list(z.keys())
            if len(keys) != 1:
                raise ValueError(f"{path}: .npz with several arrays {list(z.keys())}; name the images "
                                 f"{', '.join(map(repr, NPZ_IMAGE_KEYS))}")
            arr = z[keys[0]]
    elif path.endswith((".pt", ".pth")):
        arr = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not isinstance(arr, torch.Tensor):
            raise ValueError(f"{path}: expected a tensor of images, got {type(arr).__name__}")
        arr = arr.numpy()
    else:
        raise ValueError(f"{path}: unknown array file type; allowed: .npy, .npz, .pt")
    return _as_nchw(arr, path)


def image_chunks(source: str, num_chunks: int) -> tuple[str, list[Any]]:
    """(kind, chunks) of a dataset: 'output' (shard paths), 'files' (image paths), 'zip' or 'array' (index ranges)."""
    if os.path.isdir(source) or "://" in source and not source.endswith(IMAGE_SUFFIXES + (".zip", ".npy", ".npz", ".pt")):
        fs, root = open_output(source)
        manifest = read_manifest(fs, root)
        if manifest is not None:
            return "output", split([s.path for s in manifest.shards], num_chunks)
        files = sorted(p for p in fs.find(root) if p.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise ValueError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) and no manifest.json")
        return "files", split([fs.unstrip_protocol(p) for p in files], num_chunks)
    if source.endswith(".zip"):
        with zipfile.ZipFile(source) as z:
            names = sorted(n for n in z.namelist() if n.lower().endswith(IMAGE_SUFFIXES))
        if not names:
            raise ValueError(f"{source}: the zip holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return "zip", split(names, num_chunks)
    n = len(load_array_file(source))
    return "array", split(list(range(n)), num_chunks)


def split(items: Sequence[Any], num_chunks: int) -> list[list[Any]]:
    """`items` dealt round-robin into at most `num_chunks` non-empty lists."""
    k = max(1, min(num_chunks, len(items)))
    return [list(items[i::k]) for i in range(k)] if items else []


def chunk_stats(source: str, kind: str, chunk: list[Any], extractor: str, extractor_kwargs: dict[str, Any],
                storage_options: dict | None = None) -> FeatureStats:
    """FeatureStats of one chunk of a dataset; runs as a Ray task."""
    ex = build_extractor(extractor, **extractor_kwargs)
    stats = FeatureStats(ex.dim)
    if kind == "output":
        fs, root = open_output(source, storage_options)
        for path in chunk:
            shard = decode_shard(fs.cat_file(join_path(root, path)), format_of(path))
            stats.merge(features_stats(ex, shard.samples, shard.metadata.get("seedshard.dtype") or str(shard.samples.dtype)))
    elif kind == "files":
        import fsspec

        for batch in _batches(chunk, 256):
            stats.merge(features_stats(ex, np.stack([_load_image(fsspec.open(p, "rb").open().read()) for p in batch])))
    elif kind == "zip":
        with zipfile.ZipFile(source) as z:
            for batch in _batches(chunk, 256):
                stats.merge(features_stats(ex, np.stack([_load_image(z.read(n)) for n in batch])))
    else:
        images = load_array_file(source)
        for batch in _batches(chunk, 1024):
            stats.merge(features_stats(ex, images[batch]))
    return stats


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
