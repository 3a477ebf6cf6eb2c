"""Shard files on any fsspec URL: encoding, atomic commit, verification.

Layout of an output directory (``root``)::

    shard-00000.parquet      the samples of shard 0 (or shard-00000.safetensors)
    shard-00000.json         its sidecar: the ShardRecord, written after the data file
    manifest.json            written by the driver (see pipeline.manifest)

A shard counts as finished only when its sidecar exists and the data file's size and
sha256 match it; a resumed job can trust such shards without a manifest.

Commit is atomic. On a local disk the bytes go to ``.{name}.tmp-{uuid}`` in the same
directory and are renamed onto the final name (``os.replace``). On object stores
(s3://, gs://, memory://, ...) each file is one ``pipe`` (a single PUT or a multipart
upload, both of which appear all at once). No partial file ever has a final name; temp
files of a crashed writer may remain until ``cleanup_temp``.

Parquet shard schema (one row group, zstd, no dictionary encoding)::

    index   int64 not null                  global sample index i
    label   int64 (null when unconditional) class label of sample i
    sample  arrow.fixed_shape_tensor(value_type=<stored dtype>, shape=<one sample's shape>)

File key/value metadata: the caller's str dict (seed, sampler, ...) plus
``seedshard.format_version``. Safetensors shards hold tensors ``index``, ``sample``
and ``label`` (only when labelled) with the same metadata.

Stored dtypes: float32, float16, or uint8 images mapped from [-1, 1] by
``clip(round((x + 1) * 127.5), 0, 255)`` (round half to even), as in EDM.

The bytes of a shard are a deterministic function of its contents and metadata (for a
given pyarrow / safetensors version: Parquet records the writer's version string).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging
import os
import re
import struct
import uuid
from typing import Any, Sequence
from urllib.parse import urlsplit

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import safetensors.numpy

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
VERSION_KEY = "seedshard.format_version"
SAMPLE_DTYPES = ("float32", "float16", "uint8")
FORMATS = {"parquet": "parquet", "safetensors": "safetensors"}  # format -> file extension
TEMP_PATTERN = ".*.tmp-*"
_COLUMNS = ("index", "label", "sample")


class StorageError(ValueError):
    """A storage URL that cannot be used; the message names the URL, never credentials."""


# ---------------------------------------------------------------------------- URLs


def open_output(url: str, storage_options: dict | None = None, create: bool = True) -> tuple[fsspec.AbstractFileSystem, str]:
    """Resolve ``url`` to ``(fs, root)`` and check it can be written.

    Local directories are created (``create=False``: only checked, nothing is written); for
    bucket stores (s3://, gs://) the bucket must exist. Raises StorageError for an unknown
    protocol, a missing driver package, an unwritable local directory or a missing bucket.
    """
    options = storage_options or {}
    fs, root = resolve_url(url, options)
    if is_local(fs):
        if not create:
            _check_local_dir(url, root)
            return fs, root
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as e:
            raise StorageError(_error_message(url, e, options)) from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise StorageError(f"{redact_url(url)}: directory {root} is not writable")
    elif hasattr(fs, "split_path"):  # s3fs, gcsfs, adlfs: bucket/key paths
        bucket = root.split("/", 1)[0]
        try:
            found = fs.exists(bucket)
        except Exception as e:  # noqa: BLE001 - any backend error becomes one clean line
            raise StorageError(_error_message(url, e, options)) from None
        if not found:
            raise StorageError(f"{redact_url(url)}: bucket {bucket!r} does not exist or is not accessible")
    return fs, root


def _check_local_dir(url: str, root: str) -> None:
    """StorageError unless ``root`` is, or could be created as, a writable directory."""
    path = root
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path):
        raise StorageError(f"{redact_url(url)}: {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise StorageError(f"{redact_url(url)}: directory {path} is not writable")


def resolve_url(url: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(fs, root)`` for ``url`` without touching storage; StorageError for an unknown protocol."""
    options = storage_options or {}
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except Exception as e:  # noqa: BLE001 - unknown protocol, missing package, bad options, ...
        raise StorageError(_error_message(url, e, options)) from None
    return fs, root.rstrip("/") or "/"


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for fsspec's local file system (where rename is atomic)."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return "file" in protocols


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` part replaced by ``***@``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def _secrets(options: Any) -> set[str]:
    """Every str value in storage options, plus secret-looking environment variables."""
    found: set[str] = set()
    stack = [options]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, str) and len(obj) >= 4:
            found.add(obj)
    for name, value in os.environ.items():
        if re.search(r"SECRET|TOKEN|PASSWORD|CREDENTIAL|_KEY", name) and len(value) >= 4:
            found.add(value)
    return found


def scrub(text: str, options: Any = None) -> str:
    """``text`` with storage option values and secret environment values masked."""
    for secret in sorted(_secrets(options), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _error_message(url: str, exc: BaseException, options: Any) -> str:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return scrub(f"{redact_url(url)}: {reason}", options)


# ---------------------------------------------------------------------------- dtypes


def to_stored(samples: np.ndarray, dtype: str) -> np.ndarray:
    """Convert float samples (N, *shape) to the stored dtype (uint8: [-1, 1] -> [0, 255])."""
    if dtype not in SAMPLE_DTYPES:
        raise ValueError(f"unknown sample dtype {dtype!r}; allowed: {', '.join(SAMPLE_DTYPES)}")
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
    if dtype not in SAMPLE_DTYPES:
        raise ValueError(f"unknown sample dtype {dtype!r}; allowed: {', '.join(SAMPLE_DTYPES)}")
    if dtype == "uint8":
        return arr.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return arr.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------- encoding


@dataclasses.dataclass(frozen=True)
class ShardData:
    """Decoded shard: indices (rows,), labels (rows,) or None, samples (rows, *shape)."""

    indices: np.ndarray
    labels: np.ndarray | None
    samples: np.ndarray
    metadata: dict[str, str]


def shard_schema(fmt: str, dtype: str, shape: Sequence[int], labeled: bool) -> dict[str, Any]:
    """The manifest's ``schema`` entry: format, stored dtype, one sample's shape, labels or not."""
    if fmt not in FORMATS or dtype not in SAMPLE_DTYPES:
        raise ValueError(f"format {fmt!r} / dtype {dtype!r}; allowed: {', '.join(FORMATS)} / {', '.join(SAMPLE_DTYPES)}")
    return {"format": fmt, "dtype": dtype, "shape": [int(d) for d in shape], "labeled": labeled}


def shard_name(index: int, fmt: str) -> str:
    """``shard-00000.parquet``: the data file name of shard ``index``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown shard format {fmt!r}; allowed: {', '.join(FORMATS)}")
    return f"shard-{index:05d}.{FORMATS[fmt]}"


def sidecar_name(name: str) -> str:
    """``shard-00000.json`` for data file ``shard-00000.parquet``."""
    return name.rsplit(".", 1)[0] + ".json"


def format_of(name: str) -> str:
    """The shard format of a data file name, from its extension."""
    ext = name.rsplit(".", 1)[-1]
    for fmt, e in FORMATS.items():
        if e == ext:
            return fmt
    raise ValueError(f"{name!r} is not a shard file (extensions: {', '.join(FORMATS.values())})")


def encode_shard(
    indices: np.ndarray,
    labels: np.ndarray | None,
    samples: np.ndarray,
    fmt: str,
    metadata: dict[str, str],
) -> bytes:
    """Serialize one shard; the bytes depend only on the arguments.

    indices: (rows,) int64; labels: (rows,) int64 or None; samples: (rows, *shape) in a
    stored dtype; metadata: str -> str (e.g. seed, sampler name).
    """
    rows = len(samples)
    assert samples.ndim >= 2, f"samples must be (rows, *shape), got {samples.shape}"
    assert samples.dtype.name in SAMPLE_DTYPES, f"samples dtype {samples.dtype} not in {SAMPLE_DTYPES}"
    assert indices.shape == (rows,), f"indices {indices.shape} vs samples {samples.shape}"
    assert labels is None or labels.shape == (rows,), f"labels {labels.shape} vs samples {samples.shape}"
    bad = {k: v for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))}
    if bad:
        raise ValueError(f"shard metadata must map str to str, got {bad!r}")
    meta = dict(sorted({**metadata, VERSION_KEY: str(FORMAT_VERSION)}.items()))
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    labels = None if labels is None else np.ascontiguousarray(labels, dtype=np.int64)
    samples = np.ascontiguousarray(samples)
    if fmt == "parquet":
        return _encode_parquet(indices, labels, samples, meta)
    if fmt == "safetensors":
        return _encode_safetensors(indices, labels, samples, meta)
    raise ValueError(f"unknown shard format {fmt!r}; allowed: {', '.join(FORMATS)}")


def _encode_parquet(indices, labels, samples, meta) -> bytes:
    tensor_type = pa.fixed_shape_tensor(pa.from_numpy_dtype(samples.dtype), samples.shape[1:])
    schema = pa.schema(
        [
            pa.field("index", pa.int64(), nullable=False),
            pa.field("label", pa.int64(), nullable=True),
            pa.field("sample", tensor_type, nullable=False),
        ],
        metadata=meta,
    )
    rows = len(samples)
    label_col = pa.nulls(rows, pa.int64()) if labels is None else _arrow_of(labels)
    values = pa.FixedSizeListArray.from_arrays(_arrow_of(samples.reshape(-1)), int(np.prod(samples.shape[1:])))
    sample_col = pa.ExtensionArray.from_storage(tensor_type, values)
    table = pa.Table.from_arrays([_arrow_of(indices), label_col, sample_col], schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=max(rows, 1), compression="zstd", use_dictionary=False)
    return sink.getvalue().to_pybytes()


def _arrow_of(values: np.ndarray) -> pa.Array:
    """A contiguous 1-d array as an Arrow array without copying (`pa.array` would first import pandas,
    0.3 s in every new worker process, to check whether it was given a pandas object)."""
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def _encode_safetensors(indices, labels, samples, meta) -> bytes:
    tensors = {"index": indices, "sample": samples}
    if labels is not None:
        tensors["label"] = labels
    # safetensors serializes __metadata__ from a Rust HashMap, whose order changes from one
    # process to the next; save without it and write the header's metadata sorted ourselves.
    raw = safetensors.numpy.save(tensors)
    (n,) = struct.unpack("<Q", raw[:8])
    header = {"__metadata__": meta, **json.loads(raw[8 : 8 + n])}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def decode_shard(data: bytes, fmt: str) -> ShardData:
    """Inverse of ``encode_shard``; raises ValueError when the bytes are not a valid shard."""
    if fmt == "parquet":
        shard = _decode_parquet(data)
    elif fmt == "safetensors":
        shard = _decode_safetensors(data)
    else:
        raise ValueError(f"unknown shard format {fmt!r}; allowed: {', '.join(FORMATS)}")
    version = shard.metadata.get(VERSION_KEY)
    if version != str(FORMAT_VERSION):
        raise ValueError(f"shard {VERSION_KEY} is {version!r}; this version reads {FORMAT_VERSION}")
    return shard


def _decode_parquet(data: bytes) -> ShardData:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"not a readable Parquet file: {e}") from e
    types = {f.name: f.type for f in table.schema}
    if tuple(types) != _COLUMNS:
        raise ValueError(f"Parquet columns are {list(types)}, expected {list(_COLUMNS)}")
    if types["index"] != pa.int64() or types["label"] != pa.int64():
        raise ValueError(f"index/label must be int64, got {types['index']}/{types['label']}")
    if not isinstance(types["sample"], pa.FixedShapeTensorType):
        raise ValueError(f"sample must be arrow.fixed_shape_tensor, got {types['sample']}")
    label = table["label"]
    if label.null_count not in (0, len(label)):
        raise ValueError(f"label column has {label.null_count} nulls in {len(label)} rows")
    labels = None if label.null_count else label.to_numpy()
    samples = table["sample"].combine_chunks().to_numpy_ndarray()
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return ShardData(table["index"].to_numpy(), labels, samples, meta)


def _decode_safetensors(data: bytes) -> ShardData:
    try:
        tensors = safetensors.numpy.load(data)
        (n,) = struct.unpack("<Q", data[:8])
        meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(f"not a readable safetensors file: {e}") from e
    if set(tensors) not in ({"index", "sample"}, {"index", "label", "sample"}):
        raise ValueError(f"safetensors tensors are {sorted(tensors)}, expected index, sample[, label]")
    for name in ("index", "label"):
        if name in tensors and tensors[name].dtype != np.int64:
            raise ValueError(f"{name} must be int64, got {tensors[name].dtype}")
    return ShardData(tensors["index"], tensors.get("label"), tensors["sample"], meta)


# ---------------------------------------------------------------------------- commit


@dataclasses.dataclass(frozen=True)
class ShardRecord:
    """A committed shard: rows [start, stop) in file ``path`` (relative to the root)."""

    index: int
    start: int
    stop: int
    path: str
    rows: int
    bytes: int
    sha256: str


def join_path(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def put_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or nothing."""
    if not is_local(fs):
        fs.pipe_file(path, data)  # one PUT (or multipart upload): appears atomically
        return
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def commit_shard(fs: fsspec.AbstractFileSystem, root: str, name: str, data: bytes, record: dict) -> ShardRecord:
    """Atomically write data file ``name`` and then its sidecar; return the ShardRecord.

    ``record`` gives ``index``, ``start``, ``stop`` and optionally ``rows`` (default
    stop - start); ``path``, ``bytes`` and ``sha256`` are filled in here.
    """
    fields = {"rows": record["stop"] - record["start"], **record}
    rec = ShardRecord(**fields, path=name, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    put_atomic(fs, join_path(root, name), data)
    put_atomic(fs, join_path(root, sidecar_name(name)), (json.dumps(dataclasses.asdict(rec), sort_keys=True) + "\n").encode())
    return rec


def verify_shard(fs: fsspec.AbstractFileSystem, root: str, record: ShardRecord, deep: bool = True,
                 schema: dict[str, Any] | None = None, metadata: dict[str, str] | None = None) -> list[str]:
    """Problems with a committed shard (empty list: good).

    Shallow: the file exists with the recorded size. Deep: also sha256, decodes with the
    right schema, row count, and indices exactly range(start, stop); with ``schema`` (the
    manifest's, see ``shard_schema``) the format, stored dtype, sample shape and labels match
    it, and with ``metadata`` the file's key/value metadata holds these entries.
    """
    path = join_path(root, record.path)
    try:
        data = fs.cat_file(path) if deep else None
        size = len(data) if deep else fs.size(path)
    except FileNotFoundError:
        return [f"{record.path}: missing"]
    except Exception as e:  # noqa: BLE001 - report, never raise, with credentials scrubbed
        return [f"{record.path}: cannot read: {scrub(str(e), fs.storage_options)}"]
    problems = []
    if size != record.bytes:
        problems.append(f"{record.path}: size {size} bytes, expected {record.bytes}")
    if not deep:
        return problems
    digest = hashlib.sha256(data).hexdigest()
    if digest != record.sha256:
        problems.append(f"{record.path}: sha256 {digest[:12]}..., expected {record.sha256[:12]}...")
    try:
        shard = decode_shard(data, format_of(record.path))
    except ValueError as e:
        return problems + [f"{record.path}: cannot decode: {e}"]
    expected = record.stop - record.start
    if len(shard.samples) != record.rows or record.rows != expected:
        problems.append(f"{record.path}: {len(shard.samples)} rows, expected {record.rows} (range needs {expected})")
    if not np.array_equal(shard.indices, np.arange(record.start, record.stop)):
        problems.append(f"{record.path}: indices are not exactly range({record.start}, {record.stop})")
    if schema is not None:
        found = {"format": format_of(record.path), "dtype": shard.samples.dtype.name,
                 "shape": [int(d) for d in shard.samples.shape[1:]], "labeled": shard.labels is not None}
        wrong = [f"{k} {found[k]!r} (manifest: {schema.get(k)!r})" for k in found if found[k] != schema.get(k)]
        if wrong:
            problems.append(f"{record.path}: schema differs: {', '.join(wrong)}")
    for key, value in (metadata or {}).items():
        if shard.metadata.get(key) != value:
            problems.append(f"{record.path}: metadata {key} is {_short(shard.metadata.get(key))}, expected {_short(value)}")
    return problems


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def list_names(fs: fsspec.AbstractFileSystem, root: str, pattern: str) -> dict[str, str]:
    """{file name: path} of the files directly under ``root`` whose names match ``pattern``."""
    fs.invalidate_cache(root)  # other processes (actors) write here
    try:
        paths = fs.ls(root, detail=False)
    except FileNotFoundError:
        return {}
    names = {path.rstrip("/").rsplit("/", 1)[-1]: path for path in paths}
    return {name: names[name] for name in sorted(names) if fnmatch.fnmatchcase(name, pattern)}


def load_sidecars(fs: fsspec.AbstractFileSystem, root: str) -> dict[int, ShardRecord]:
    """The ShardRecords of all sidecars under ``root``, by shard index (unreadable ones skipped)."""
    records = {}
    for name, path in list_names(fs, root, "shard-*.json").items():
        try:
            rec = ShardRecord(**json.loads(fs.cat_file(path)))
            if sidecar_name(rec.path) != name:
                raise ValueError(f"describes {rec.path!r}")
        except (ValueError, TypeError) as e:
            log.warning("ignoring sidecar %s: %s", name, e)
            continue
        records[rec.index] = rec
    return dict(sorted(records.items()))


def cleanup_temp(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """Remove temp files (``.*.tmp-*``) left by crashed writers; returns their names.

    Call it only while no writer is active on ``root`` (e.g. when a job starts).
    """
    temps = list_names(fs, root, TEMP_PATTERN)
    for path in temps.values():
        fs.rm_file(path)
    return list(temps)
