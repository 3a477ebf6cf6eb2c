"""FID in jobs: feature statistics of each shard on the actors, merged on the driver.

A generation job with `metrics.fid` extracts features of every shard's samples on the actor
that made them (as stored: uint8/float16 rounding included, so the FID is that of the files),
returns their `FeatureStats`, and the driver merges them and compares with the reference
`.npz`. Shards a previous run committed are read back and featurised by Ray tasks, as are
existing sample sets (`seedshard fid --samples`) and reference datasets (`seedshard ref-stats`:
a directory or zip of images, an array file, or a seedshard output).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from .metrics import FeatureStats, build_extractor, default_reference, fid_from_stats
from .output.codecs import format_of
from .output.dtypes import from_stored
from .output.fs import join_path, open_output, put_atomic
from .output.shards import decode_shard

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
REPORT_NAME = "fid.json"


def reference_url(extractor: str, ref: str | None) -> str:
    """The reference .npz: `ref`, else the one shipped for `extractor` (digits)."""
    url = ref or default_reference(extractor)
    if url is None:
        raise ValueError(f"metrics.fid.ref is required for extractor {extractor!r} (no reference ships with it); "
                         "build one with `seedshard ref-stats`")
    return url


def features_stats(extractor: Any, images: np.ndarray | torch.Tensor, stored_dtype: str | None = None) -> FeatureStats:
    """FeatureStats of a batch of images (n, C, H, W); `stored_dtype` maps stored samples back to [-1, 1] floats."""
    x = torch.as_tensor(from_stored(np.asarray(images), stored_dtype) if stored_dtype else images)
    return FeatureStats(extractor.dim).update(extractor(x))


def fid_report(stats: FeatureStats, extractor: str, ref: str | None) -> dict[str, Any]:
    """{'fid', 'extractor', 'reference', 'num_samples'} of merged statistics."""
    url = reference_url(extractor, ref)
    return {"fid": fid_from_stats(stats, url), "extractor": extractor, "reference": url, "num_samples": stats.n}


def write_report(fs: Any, root: str, report: dict[str, Any]) -> None:
    put_atomic(fs, join_path(root, REPORT_NAME), (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())


# -- sources of images, split into chunks that Ray tasks featurise ----------------------------


def _load_image(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 (C, H, W) with C = 1 (grayscale) or 3."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img = img.convert("L") if img.mode in ("L", "LA", "I", "I;16", "1") else img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


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
    """Images from a .npy / .npz (key 'images', 'x' or the only array) / .pt (a tensor, loaded weights_only)."""
    from .models.checkpoint import read_bytes

    data = read_bytes(path)
    if path.endswith(".npy"):
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    elif path.endswith(".npz"):
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            keys = [k for k in ("images", "x") if k in z] or list(z.keys())
            if len(keys) != 1 and not any(k in z for k in ("images", "x")):
                raise ValueError(f"{path}: .npz with several arrays {list(z.keys())}; name the images 'images' or 'x'")
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
        if fs.exists(join_path(root, "manifest.json")):
            from .output.manifest import read_manifest

            manifest = read_manifest(fs, root)
            return "output", _split([s.path for s in manifest.shards], num_chunks)
        files = sorted(p for p in fs.find(root) if p.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise ValueError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) and no manifest.json")
        return "files", _split([fs.unstrip_protocol(p) for p in files], num_chunks)
    if source.endswith(".zip"):
        with zipfile.ZipFile(source) as z:
            names = sorted(n for n in z.namelist() if n.lower().endswith(IMAGE_SUFFIXES))
        if not names:
            raise ValueError(f"{source}: the zip holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return "zip", _split(names, num_chunks)
    n = len(load_array_file(source))
    return "array", _split(list(range(n)), num_chunks)


def _split(items: Sequence[Any], num_chunks: int) -> list[list[Any]]:
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


def dataset_stats(source: str, extractor: str, extractor_kwargs: dict[str, Any] | None = None,
                  num_workers: int = 2, storage_options: dict | None = None) -> FeatureStats:
    """Merged FeatureStats of a dataset, featurised in parallel by Ray tasks (Ray must be connected)."""
    import ray

    kind, chunks = image_chunks(source, num_workers)
    task = ray.remote(num_cpus=1)(chunk_stats)
    refs = [task.remote(source, kind, c, extractor, extractor_kwargs or {}, storage_options) for c in chunks]
    total = FeatureStats()
    for stats in ray.get(refs):
        total.merge(stats)
    return total
