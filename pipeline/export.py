"""`seedshard export OUT --to FORMAT DEST`: an output's samples as the files other tools read.

``png``         DEST/000000/000000.png, DEST/000000/000001.png, ... one folder per 1000 indices (EDM's
                ``generate.py`` layout, what clean-fid, torch-fidelity, pytorch-fid and EDM's ``fid.py``
                read), plus DEST/dataset.json ``{"labels": [["000000/000000.png", 3], ...]}`` (EDM's
                dataset format) when the samples are labelled.
``zip``         the same names inside one .zip (stored, not compressed: PNG already is).
``npz``         ``arr_0`` uint8 (N, H, W, C) and ``arr_1`` int64 labels (N,) when labelled: the batch the
                ADM / guided-diffusion evaluator reads.
``webdataset``  DEST/shard-00000.tar, ... the output's shards as WebDataset tars (``output.codecs.
                webdataset``), samples kept in their stored dtype, metadata kept.

png, zip and npz need image samples (C, H, W), C in (1, 3), written as their canonical uint8 image
(``output.images.to_uint8``: EDM's conversion for float storage, uint8 storage as stored). Exports
read one shard at a time (each checked against its manifest entry), write to a temp name beside DEST
and rename it onto DEST at the end, so DEST appears whole or not at all. DEST is a local path that
must not exist yet (an empty directory is fine for png and webdataset).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .config import ConfigError
from .output.codecs import ShardData
from .output.images import encode_png, is_image_shape, to_uint8
from .output.reader import load_shard, open_manifest
from .output.shards import VERSION_KEY, encode_shard, shard_name

EXPORTS = ("png", "zip", "npz", "webdataset")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can record: entries carry no export time


def image_name(index: int) -> str:
    """``000000/000042.png``: where sample ``index`` goes in a png or zip export (EDM's layout)."""
    return f"{index - index % 1000:06d}/{index:06d}.png"


def export_output(url: str, to: str, dest: str, *, storage_options: dict | None = None, progress: bool = True) -> int:
    """Export the complete output at ``url`` as ``to`` (one of EXPORTS) to local ``dest``; returns the sample count."""
    if to not in EXPORTS:
        raise ConfigError(f"unknown export format {to!r}; allowed: {', '.join(EXPORTS)}")
    if "://" in dest and not dest.startswith("file://"):
        raise ConfigError(f"export writes to a local path, got {dest!r}")
    dest = os.path.abspath(dest.removeprefix("file://"))
    if os.path.exists(dest) and not (to in ("png", "webdataset") and os.path.isdir(dest) and not os.listdir(dest)):
        raise ConfigError(f"{dest} already exists; remove it or choose another path")
    fs, root, manifest = open_manifest(url, storage_options)
    if manifest.status != "complete":
        raise ValueError(f"{url}: manifest status is {manifest.status!r}; export needs a complete output")
    shape = manifest.schema_["shape"]
    if to != "webdataset" and not is_image_shape(shape):
        raise ConfigError(f"--to {to} needs image samples (C, H, W) with C in (1, 3); {url} holds samples of shape {shape}")
    shards = (load_shard(fs, root, rec, url) for rec in manifest.shards)
    with _progress(manifest.num_samples, to, progress) as advance:
        counted = _counting(shards, advance)
        if to == "npz":
            _write_npz(counted, dest, manifest.num_samples, shape, manifest.schema_["labeled"])
        elif to == "webdataset":
            _write_webdataset(counted, dest, [rec.index for rec in manifest.shards])
        else:
            _write_images(counted, dest, as_zip=to == "zip")
    return manifest.num_samples


def _write_images(shards: Iterator[ShardData], dest: str, as_zip: bool) -> None:
    """PNG files named ``image_name(i)`` (+ dataset.json when labelled) into a directory or a .zip."""
    indices, labels = [], []
    with _atomic(dest, directory=not as_zip) as tmp:
        archive = zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) if as_zip else None
        for shard in shards:
            for index, image in zip(shard.indices.tolist(), to_uint8(shard.samples)):
                name = image_name(index)
                if archive is not None:
                    archive.writestr(zipfile.ZipInfo(name, ZIP_DATE), encode_png(image))
                else:
                    os.makedirs(os.path.join(tmp, os.path.dirname(name)), exist_ok=True)
                    with open(os.path.join(tmp, name), "wb") as f:
                        f.write(encode_png(image))
            if shard.labels is not None:
                indices.append(shard.indices)
                labels.append(shard.labels)
        if labels:
            with (archive.open(zipfile.ZipInfo("dataset.json", ZIP_DATE), "w") if archive is not None
                  else open(os.path.join(tmp, "dataset.json"), "wb")) as f:
                _write_labels(f, np.concatenate(indices), np.concatenate(labels))
        if archive is not None:
            archive.close()


def _write_labels(f: Any, indices: np.ndarray, labels: np.ndarray, chunk: int = 10000) -> None:
    """EDM's dataset.json, ``{"labels": [["000000/000000.png", 3], ...]}``, written in chunks."""
    f.write(b'{"labels": [')
    for start in range(0, len(indices), chunk):
        pairs = zip(indices[start:start + chunk].tolist(), labels[start:start + chunk].tolist())
        f.write((", " if start else "").encode() + ", ".join(json.dumps([image_name(i), y]) for i, y in pairs).encode())
    f.write(b"]}")


def _write_npz(shards: Iterator[ShardData], dest: str, n: int, shape: list[int], labeled: bool) -> None:
    """``arr_0`` uint8 (n, H, W, C) streamed shard by shard into the .npz, then ``arr_1`` labels."""
    c, h, w = shape
    labels = []
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": (n, h, w, c)}
    with _atomic(dest, directory=False) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        with archive.open(zipfile.ZipInfo("arr_0.npy", ZIP_DATE), "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, header)
            for shard in shards:
                f.write(np.ascontiguousarray(to_uint8(shard.samples).transpose(0, 2, 3, 1)).tobytes())
                if labeled:
                    labels.append(shard.labels)
        if labeled:
            buf = io.BytesIO()
            np.save(buf, np.concatenate(labels).astype(np.int64), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo("arr_1.npy", ZIP_DATE), buf.getvalue())


def _write_webdataset(shards: Iterator[ShardData], dest: str, shard_indices: list[int]) -> None:
    """One WebDataset tar per shard, named as the shard (``shard-00000.tar``)."""
    with _atomic(dest, directory=True) as tmp:
        for k, shard in zip(shard_indices, shards):
            meta = {key: v for key, v in shard.metadata.items() if key != VERSION_KEY}
            data = encode_shard(shard.indices, shard.labels, shard.samples, "webdataset", meta)
            with open(os.path.join(tmp, shard_name(k, "webdataset")), "wb") as f:
                f.write(data)


@contextmanager
def _atomic(dest: str, directory: bool) -> Iterator[str]:
    """A temp path beside ``dest`` (a new directory, or a file name) renamed onto ``dest`` on success, removed on failure."""
    parent, name = os.path.split(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.tmp-{uuid.uuid4().hex}")
    if directory:
        os.mkdir(tmp)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


@contextmanager
def _progress(total: int, to: str, enabled: bool) -> Iterator[Callable[[int], Any]]:
    """A tqdm bar over samples (shown on a terminal when enabled); yields its ``update``."""
    from tqdm import tqdm

    with tqdm(total=total, unit="sample", desc=f"export {to}", disable=None if enabled else True) as bar:
        yield bar.update


def _counting(shards: Iterator[ShardData], advance: Callable[[int], Any]) -> Iterator[ShardData]:
    for shard in shards:
        yield shard
        advance(len(shard.samples))
