"""WebDataset shards: one tar file, one record per sample, keyed by its zero-padded global index::

    0000000040.cls    the class label as decimal text (only when labelled)
    0000000040.json   {"index": 40, "label": 7 | null, "seed": <job seed> | null}
    0000000040.png    uint8 image samples (C, H, W) with C in (1, 3): grayscale or RGB PNG
    0000000040.npy    any other sample: the stored array (np.save)
    0000000040.latent.npy   the pre-decode latents, float32 (only with run.store_latents)

Members are sorted by name (records in index order, files of a record together, as WebDataset needs);
every header has mtime 0, uid/gid 0, empty uname/gname and mode 0644, so the bytes depend only on the
contents (PNG bytes for a given Pillow / zlib, see ``images``). The shard's str metadata sits in one
PAX global header at the start, which tar readers (``tarfile``, ``webdataset``, ``ray.data.
read_webdataset``, GNU tar) apply silently instead of yielding it as a file.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..images import encode_png, is_image_shape, load_image
from .base import LATENT, Codec, ShardData

KEY_DIGITS = 10
LATENT_EXT = f"{LATENT}.npy"
SEED_KEY = "seedshard.seed"


def record_key(index: int) -> str:
    """``0000000040``: the WebDataset key of sample ``index``."""
    return f"{index:0{KEY_DIGITS}d}"


def encode(indices: np.ndarray, labels: np.ndarray | None, samples: np.ndarray, meta: dict[str, str],
           latents: np.ndarray | None = None) -> bytes:
    """One tar file holding the shard, deterministic (see the module docstring)."""
    if not len(samples):
        raise ValueError("a WebDataset shard needs at least one sample")
    png = samples.dtype == np.uint8 and is_image_shape(samples.shape[1:])
    seed = int(meta[SEED_KEY]) if SEED_KEY in meta else None
    buf = io.BytesIO()
    with tarfile.TarFile(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers=meta) as tar:
        for row, index in enumerate(indices.tolist()):
            label = None if labels is None else int(labels[row])
            files = {"json": json.dumps({"index": index, "label": label, "seed": seed}, sort_keys=True).encode(),
                     "png" if png else "npy": encode_png(samples[row]) if png else _npy(samples[row])}
            if label is not None:
                files["cls"] = str(label).encode()
            if latents is not None:
                files[LATENT_EXT] = _npy(latents[row])
            for ext in sorted(files):
                _add(tar, f"{record_key(index)}.{ext}", files[ext])
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def decode_record(key: str, files: dict[str, bytes]) -> tuple[int, int | None, np.ndarray, np.ndarray | None]:
    """(index, label or None, sample, latent or None) of one record: its files by extension; ValueError when
    malformed."""
    try:
        info = json.loads(files["json"])
        index, label = info["index"], info["label"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"record {key!r}: no readable .json with index and label ({e!r})") from None
    if not isinstance(index, int) or key != record_key(index):
        raise ValueError(f"record {key!r}: .json index {index!r} does not match its key")
    if ("cls" in files) != (label is not None) or (label is not None and files["cls"] != str(label).encode()):
        raise ValueError(f"record {key!r}: .cls {files.get('cls')!r} disagrees with .json label {label!r}")
    kinds = sorted(set(files) & {"png", "npy"})
    extra = sorted(set(files) - {"json", "cls", "png", "npy", LATENT_EXT})
    if len(kinds) != 1 or extra:
        raise ValueError(f"record {key!r} has files {sorted(files)}; expected json, one of png/npy, cls when labelled "
                         f"and {LATENT_EXT} with latents")
    try:
        if kinds[0] == "png":
            sample = load_image(files["png"])
        else:
            sample = np.load(io.BytesIO(files["npy"]), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - Pillow and numpy raise many types for bad bytes
        raise ValueError(f"record {key!r}: cannot read its .{kinds[0]}: {e}") from None
    latent = None
    if LATENT_EXT in files:
        try:
            latent = np.load(io.BytesIO(files[LATENT_EXT]), allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - numpy raises many types for bad bytes
            raise ValueError(f"record {key!r}: cannot read its .{LATENT_EXT}: {e}") from None
    return index, label, sample, latent


def decode(data: bytes) -> ShardData:
    """Inverse of ``encode``; ValueError when the bytes are not a WebDataset shard."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            meta = dict(tar.pax_headers)
            rows = [decode_record(key, files) for key, files in _records(tar)]
    except tarfile.TarError as e:
        raise ValueError(f"not a readable tar file: {e}") from None
    if not rows:
        raise ValueError("the tar file holds no records")
    indices, labels, samples, latents = zip(*rows)
    if len({(s.shape, s.dtype) for s in samples}) != 1 or len({lab is None for lab in labels}) != 1:
        raise ValueError("records differ in sample shape, dtype or having a label")
    if len({None if z is None else (z.shape, z.dtype) for z in latents}) != 1:
        raise ValueError(f"records differ in latent shape, dtype or having a .{LATENT_EXT}")
    label_array = None if labels[0] is None else np.array(labels, dtype=np.int64)
    latent_array = None if latents[0] is None else np.stack(latents)
    return ShardData(np.array(indices, dtype=np.int64), label_array, np.stack(samples), meta, latent_array)


def _records(tar: tarfile.TarFile) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per record, in tar order; ValueError for members that are not record files."""
    key, files = None, {}
    for member in tar:
        name = member.name
        if not member.isreg() or "/" in name or "." not in name:
            raise ValueError(f"tar member {name!r} is not a record file KEY.EXT")
        k, ext = name.split(".", 1)
        if k != key:
            if key is not None:
                yield key, files
            key, files = k, {}
        if ext in files:
            raise ValueError(f"tar member {name!r} appears twice")
        files[ext] = tar.extractfile(member).read()
    if key is not None:
        yield key, files


def read_ray(paths: list[str], filesystem: Any) -> Any:
    """A ray.data.Dataset over WebDataset shard files with columns index, label, sample (decoded as ``decode``)."""
    import ray.data

    raw = ray.data.read_webdataset(paths, filesystem=filesystem, decoder=None)
    return raw.map(_ray_row)


def _ray_row(row: dict[str, Any]) -> dict[str, Any]:
    files = {ext: row[ext] for ext in ("json", "cls", "png", "npy", LATENT_EXT) if row.get(ext) is not None}
    index, label, sample, latent = decode_record(row["__key__"], files)
    return {"index": index, "label": label, "sample": sample, **({LATENT: latent} if latent is not None else {})}


WEBDATASET = Codec("webdataset", "tar", encode, decode, read_ray)
