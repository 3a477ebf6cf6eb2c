"""Parquet shards (one row group, zstd, no dictionary encoding)::

    index   int64 not null                  global sample index i
    label   int64 (null when unconditional) class label of sample i
    sample  one sample, in the stored dtype (see below)
    image   struct<bytes: binary, path: string>: the sample as a PNG (format version 2, uint8 samples
            of shape (C, H, W) with C in (1, 3) only; path is null)
    latent  the pre-decode latents of a latent model, float32, stored like ``sample`` (only with
            ``run.store_latents``)

``sample`` is stored as nested fixed-size lists, one level per axis (``fixed_size_list<
fixed_size_list<fixed_size_list<uint8>[W]>[H]>[C]``) in format version 2, and as the canonical
``arrow.fixed_shape_tensor`` extension in format version 1. Why 2 changed it: HF ``datasets``
(5.2) refuses any file holding a column of a foreign Arrow extension type, whatever features it is
given ("does not have a datasets dtype equivalent"), so no single column can be both a
fixed_shape_tensor for pyarrow and an array for HF. Nested fixed-size lists keep the shape and the
dtype in the type itself for every reader: HF ``datasets`` (nested ``List(..., length=n)``), polars
(``Array(dtype, shape)``), DuckDB, pyarrow; ``pipeline.read_dataset`` turns the column back into
``arrow.fixed_shape_tensor`` for Ray Data. Parquet stores both as LIST columns either way.

File key/value metadata: the shard's str dict, plus (format version 2) ``huggingface``: the HF
``datasets`` features of the columns (the ``image`` column as its ``Image`` feature, which HF
decodes to a PIL image). PNGs are encoded deterministically (Pillow, zlib level 6, no
timestamps or other ancillary chunks). The bytes depend on the pyarrow version (Parquet records
the writer's) and, for the image column, on the zlib version.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..images import encode_png, is_image_shape
from ..layout import VERSION_KEY
from .base import COLUMNS, LATENT, Codec, ShardData

HF_KEY = "huggingface"  # the schema metadata key HF datasets reads its features from
IMAGE_COLUMN = "image"


def encode(indices: np.ndarray, labels: np.ndarray | None, samples: np.ndarray, meta: dict[str, str],
           latents: np.ndarray | None = None) -> bytes:
    """One Parquet file holding the shard; contiguous arrays in, bytes out."""
    legacy = meta.get(VERSION_KEY) == "1"
    rows = len(samples)
    sample_col = _array_column(samples, legacy)
    fields = [
        pa.field("index", pa.int64(), nullable=False),
        pa.field("label", pa.int64(), nullable=True),
        pa.field("sample", sample_col.type, nullable=False),
    ]
    columns = [_arrow_of(indices), pa.nulls(rows, pa.int64()) if labels is None else _arrow_of(labels), sample_col]
    if latents is not None:
        latent_col = _array_column(latents, legacy)
        fields.append(pa.field(LATENT, latent_col.type, nullable=False))
        columns.append(latent_col)
    shape = samples.shape[1:]
    if not legacy:
        if is_image(samples.dtype, shape):
            fields.append(pa.field(IMAGE_COLUMN, IMAGE_TYPE, nullable=True))
            columns.append(image_array(samples))
        meta = {**meta, HF_KEY: hf_features(fields, samples.dtype)}
    table = pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=meta))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=max(rows, 1), compression="zstd", use_dictionary=False)
    return sink.getvalue().to_pybytes()


def _array_column(arrays: np.ndarray, legacy: bool) -> pa.Array:
    """Contiguous arrays (rows, *shape) as one column: nested fixed-size lists (fixed_shape_tensor when `legacy`)."""
    values = _arrow_of(arrays.reshape(-1))
    return _tensor(values, arrays.shape[1:]) if legacy else nested_array(values, arrays.shape[1:])


def _arrow_of(values: np.ndarray) -> pa.Array:
    """A contiguous 1-d array as an Arrow array without copying (`pa.array` would first import pandas,
    0.3 s in every new worker process, to check whether it was given a pandas object)."""
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def nested_array(values: pa.Array, shape: tuple[int, ...]) -> pa.Array:
    """Flat values (rows * prod(shape),) -> nested fixed-size lists, one level per axis of ``shape``."""
    for d in reversed(shape):
        values = pa.FixedSizeListArray.from_arrays(values, int(d))
    return values


def flat_values(column: pa.Array) -> tuple[pa.Array, tuple[int, ...]]:
    """Inverse of ``nested_array`` (also for a fixed_shape_tensor column): (flat values, one sample's shape)."""
    if isinstance(column.type, pa.FixedShapeTensorType):
        return column.storage.flatten(), tuple(column.type.shape)
    shape = []
    while pa.types.is_fixed_size_list(column.type):
        shape.append(column.type.list_size)
        column = column.flatten()
    return column, tuple(shape)


def is_image(dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    """True for uint8 samples of shape (C, H, W) with C in (1, 3): those get an ``image`` column."""
    return np.dtype(dtype) == np.uint8 and is_image_shape(shape)


IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])  # HF's Image storage


def image_array(samples: np.ndarray) -> pa.StructArray:
    """The ``image`` column of uint8 samples (rows, C, H, W)."""
    pngs = [encode_png(x) for x in samples]
    offsets = np.zeros(len(pngs) + 1, np.int32)
    np.cumsum([len(p) for p in pngs], out=offsets[1:])
    column = pa.Array.from_buffers(pa.binary(), len(pngs), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(pngs))])
    return pa.StructArray.from_arrays([column, pa.nulls(len(samples), pa.string())], fields=list(IMAGE_TYPE))


def hf_features(fields: list[pa.Field], dtype: np.dtype) -> str:
    """The ``huggingface`` schema metadata: the HF datasets features of the shard's columns."""
    features: dict[str, Any] = {}
    for field in fields:
        if field.name == IMAGE_COLUMN:
            features[field.name] = {"_type": "Image"}
        elif field.name in ("sample", LATENT):
            value_dtype = np.dtype(dtype).name if field.name == "sample" else "float32"
            feature: dict[str, Any] = {"_type": "Value", "dtype": value_dtype}
            for d in reversed(_shape_of(field.type)):
                feature = {"_type": "Sequence", "feature": feature, "length": d}
            features[field.name] = feature
        else:
            features[field.name] = {"_type": "Value", "dtype": "int64"}
    return json.dumps({"info": {"features": features}}, sort_keys=True)


def _shape_of(t: pa.DataType) -> tuple[int, ...]:
    shape = []
    while pa.types.is_fixed_size_list(t):
        shape.append(t.list_size)
        t = t.value_type
    return tuple(shape)


def decode(data: bytes) -> ShardData:
    """Inverse of ``encode``; ValueError when the bytes are not a Parquet shard."""
    try:
        # Arrow reads from its own copy of the bytes: a reader over Python memory (pa.BufferReader(data)) can be
        # released last by an Arrow pool thread, which needs the GIL for it and aborts a process that is exiting then
        # ("terminate called without an active exception", exit 134, even through ParquetFile).
        with pq.ParquetFile(pa.BufferReader(_arrow_copy(data))) as f:
            table = f.read()
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"not a readable Parquet file: {e}") from e
    types = {f.name: f.type for f in table.schema}
    names = tuple(n for n in types if n not in (IMAGE_COLUMN, LATENT))
    if names != COLUMNS or list(types)[: len(COLUMNS)] != list(COLUMNS):
        raise ValueError(f"Parquet columns are {list(types)}, expected {list(COLUMNS)} (and {IMAGE_COLUMN!r}, {LATENT!r})")
    if types["index"] != pa.int64() or types["label"] != pa.int64():
        raise ValueError(f"index/label must be int64, got {types['index']}/{types['label']}")
    label = table["label"]
    if label.null_count not in (0, len(label)):
        raise ValueError(f"label column has {label.null_count} nulls in {len(label)} rows")
    labels = None if label.null_count else label.to_numpy()
    latents = _arrays(table, LATENT) if LATENT in types else None
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items() if k.decode() != HF_KEY}
    return ShardData(table["index"].to_numpy(), labels, _arrays(table, "sample"), meta, latents)


def _arrow_copy(data: bytes) -> pa.Buffer:
    """``data`` copied into memory Arrow owns (no Python object to release from a pool thread)."""
    stream = pa.BufferOutputStream()
    stream.write(data)
    return stream.getvalue()


def _arrays(table: pa.Table, name: str) -> np.ndarray:
    """Column `name` (fixed_shape_tensor or nested fixed-size lists of numbers) as an array (rows, *shape)."""
    column = table[name].combine_chunks()
    if not (isinstance(column.type, pa.FixedShapeTensorType) or pa.types.is_fixed_size_list(column.type)):
        raise ValueError(f"{name} must be arrow.fixed_shape_tensor or nested fixed-size lists, got {column.type}")
    values, shape = flat_values(column)
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise ValueError(f"{name} values must be numbers, got {values.type}")
    return values.to_numpy(zero_copy_only=False).reshape(len(table), *shape)


def read_ray(paths: list[str], filesystem: Any) -> Any:
    """A ray.data.Dataset over Parquet shard files: columns index, label, sample (an arrow.fixed_shape_tensor),
    and, when the shards have an image column, image decoded as Ray Data holds images (uint8 (H, W) or
    (H, W, 3) arrays, as ``ray.data.read_images`` gives them)."""
    import ray.data

    return ray.data.read_parquet(paths, filesystem=filesystem).map_batches(ray_batch, batch_format="pyarrow")


def ray_batch(batch: pa.Table) -> pa.Table:
    """A batch of shard rows as Ray Data shows them: ``sample`` (and ``latent``) as ``arrow.fixed_shape_tensor`` (format-2 shards
    store nested lists), ``image`` decoded from PNG."""
    for name in ("sample", LATENT):
        column = batch[name].combine_chunks() if name in batch.column_names else None
        if column is not None and not isinstance(column.type, pa.FixedShapeTensorType):
            values, shape = flat_values(column)
            batch = batch.set_column(batch.schema.get_field_index(name), name, _tensor(values, shape))
    if IMAGE_COLUMN in batch.column_names:
        from PIL import Image

        pngs = batch[IMAGE_COLUMN].combine_chunks().field("bytes").to_pylist()
        images = np.stack([np.asarray(Image.open(io.BytesIO(png))) for png in pngs]) if pngs else np.zeros((0, 0, 0), np.uint8)
        batch = batch.set_column(batch.schema.get_field_index(IMAGE_COLUMN), IMAGE_COLUMN,
                                 _tensor(_arrow_of(images.reshape(-1)), images.shape[1:]))
    return batch


def _tensor(values: pa.Array, shape: tuple[int, ...]) -> pa.ExtensionArray:
    """Flat values (rows * prod(shape),) as an arrow.fixed_shape_tensor column."""
    storage = pa.FixedSizeListArray.from_arrays(values, int(np.prod(shape)))
    return pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(values.type, shape), storage)


PARQUET = Codec("parquet", "parquet", encode, decode, read_ray)
