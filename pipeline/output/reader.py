"""Read samples back from an output URL without knowing its shard layout.

The manifest maps global sample indices to shards (shard k holds [start, stop)); only
the shards that hold requested indices are read, and each is checked against its
recorded size and sha256 before use. Samples come back in their stored dtype
(``dtypes.from_stored`` turns them into float32 in [-1, 1]); ``read_latents`` reads the pre-decode
latents of a job run with ``run.store_latents``.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .codecs import CODECS, LATENT, ShardData, codec, format_of
from .fs import is_local, join_path, resolve_url
from .manifest import Manifest, read_manifest
from .shards import ShardRecord, decode_shard

if TYPE_CHECKING:
    import fsspec
    import ray.data


def open_manifest(url: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str, Manifest]:
    """(fs, root, manifest) of the output at ``url``; FileNotFoundError when it has no manifest."""
    fs, root = resolve_url(url, storage_options)
    manifest = read_manifest(fs, root)
    if manifest is None:
        raise FileNotFoundError(f"no manifest.json under {fs.unstrip_protocol(root)} (nor in its __seedshard__/): "
                                "not a seedshard output, or its job has not written one yet")
    return fs, root, manifest


def _integer_indices(indices: Sequence[int]) -> np.ndarray:
    """`indices` as int64 (k,); TypeError for anything but integers (0.9 is not row 0, True is not row 1)."""
    arr = np.asarray(indices).reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"sample indices must be integers (got {arr[:5].tolist()}{' ...' if arr.size > 5 else ''} "
                        f"as {arr.dtype})")
    return arr.astype(np.int64)


def read_samples(
    url: str,
    indices: Sequence[int] | None = None,
    *,
    storage_options: dict | None = None,
    with_labels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    """Samples (n, *shape) in stored dtype, rows in the order of ``indices`` (all when None).

    With ``with_labels``, returns ``(samples, labels)``; labels (n,) int64, or None for an
    unlabelled output.
    """
    samples, labels = _read(url, indices, storage_options, latents=False)
    return (samples, labels) if with_labels else samples


def read_latents(url: str, indices: Sequence[int] | None = None, *, storage_options: dict | None = None) -> np.ndarray:
    """The pre-decode latents (n, *model.shape) float32 of a job run with ``run.store_latents``, rows in the order
    of ``indices`` (all when None); ValueError for an output without them."""
    return _read(url, indices, storage_options, latents=True)[0]


def _read(url: str, indices: Sequence[int] | None, storage_options: dict | None,
          latents: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(samples, or with ``latents`` the latents, in the order of ``indices``; labels (n,) or None)."""
    fs, root, manifest = open_manifest(url, storage_options)
    schema = manifest.schema_
    if latents and LATENT not in schema:
        raise ValueError(f"{url} stores no latents (its job ran without run.store_latents)")
    n = manifest.num_samples
    idx = np.arange(n, dtype=np.int64) if indices is None else _integer_indices(indices)
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise IndexError(f"sample indices {bad[:5].tolist()} out of range: {url} holds indices [0, {n})")
    shards = manifest.shards
    starts = np.array([s.start for s in shards], dtype=np.int64)
    stops = np.array([s.stop for s in shards], dtype=np.int64)
    pos = np.searchsorted(starts, idx, side="right") - 1
    missing = idx[(pos < 0) | (idx >= stops[np.maximum(pos, 0)])] if shards else idx
    if missing.size:
        raise IndexError(f"sample indices {missing[:5].tolist()} are in no committed shard of {url} (status {manifest.status})")

    shape, dtype = (schema[LATENT]["shape"], schema[LATENT]["dtype"]) if latents else (schema["shape"], schema["dtype"])
    out = np.empty((len(idx), *shape), dtype=dtype)
    labels = np.empty(len(idx), dtype=np.int64) if schema["labeled"] else None
    for p in np.unique(pos):
        rec = shards[p]
        shard = load_shard(fs, root, rec, url)
        rows = pos == p
        values = shard.latents if latents else shard.samples
        if values is None:
            raise ValueError(f"{rec.path} under {url} holds no latents, though its manifest says the job stores them")
        out[rows] = values[idx[rows] - rec.start]
        if labels is not None:
            labels[rows] = shard.labels[idx[rows] - rec.start]
    return out, labels


def load_shard(fs: fsspec.AbstractFileSystem, root: str, rec: ShardRecord, url: str) -> ShardData:
    """The decoded shard of manifest entry ``rec``; ValueError unless its bytes, sha256 and indices match the entry."""
    data = fs.cat_file(join_path(root, rec.path))
    if len(data) != rec.bytes or hashlib.sha256(data).hexdigest() != rec.sha256:
        raise ValueError(f"{rec.path} under {url} does not match its manifest entry (size or sha256); run verification")
    shard = decode_shard(data, format_of(rec.path))
    if not np.array_equal(shard.indices, np.arange(rec.start, rec.stop)):
        raise ValueError(f"{rec.path} under {url} does not hold indices [{rec.start}, {rec.stop})")
    return shard


def read_dataset(url: str, *, storage_options: dict | None = None) -> ray.data.Dataset:
    """A Ray Dataset over an output's shards (columns index, label, sample; image for uint8 images), for
    formats Ray Data reads. Uses the Ray this process is connected to, else the cluster at RAY_ADDRESS,
    else starts a private local Ray (see ``connect_ray``)."""
    fs, root, manifest = open_manifest(url, storage_options)
    reader = codec(manifest.schema_["format"]).ray_reader
    if reader is None:
        readable = [name for name, c in CODECS.items() if c.ray_reader is not None]
        raise ValueError(f"{url} holds {manifest.schema_['format']} shards; read_dataset reads {', '.join(readable)} outputs")
    paths = [join_path(root, s.path) for s in manifest.shards]
    connect_ray()
    return reader(paths, None if is_local(fs) else fs)


def connect_ray() -> None:
    """Connect to Ray unless connected: to RAY_ADDRESS when set, else to a private local Ray the way jobs
    start one (its own temp dir, removed at exit; no dashboard; token authentication off), never to a
    default shared one."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False, configure_logging=False)
        return
    temp_dir = tempfile.mkdtemp(prefix="ss-ray-", dir="/tmp")  # short: socket paths
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private cluster of this process
    ray.init(address="local", include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False, configure_logging=False)
    atexit.register(_stop_private_ray, temp_dir)  # runs before Ray's own exit hook (last registered, first run)


def _stop_private_ray(temp_dir: str) -> None:
    import ray

    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
