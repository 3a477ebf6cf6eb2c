"""Parquet shards (one row group, zstd, no dictionary encoding)::

    index   int64 not null                  global sample index i
    label   int64 (null when unconditional) class label of sample i
    sample  arrow.fixed_shape_tensor(value_type=<stored dtype>, shape=<one sample's shape>)

File key/value metadata: the shard's str dict. Readable by plain pyarrow, pandas and
``ray.data.read_parquet``. The bytes depend on the pyarrow version (Parquet records the writer's).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .base import COLUMNS, Codec, ShardData


def encode(indices: np.ndarray, labels: np.ndarray | None, samples: np.ndarray, meta: dict[str, str]) -> bytes:
    """One Parquet file holding the shard; contiguous arrays in, bytes out."""
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


def decode(data: bytes) -> ShardData:
    """Inverse of ``encode``; ValueError when the bytes are not a Parquet shard."""
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"not a readable Parquet file: {e}") from e
    types = {f.name: f.type for f in table.schema}
    if tuple(types) != COLUMNS:
        raise ValueError(f"Parquet columns are {list(types)}, expected {list(COLUMNS)}")
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


def read_ray(paths: list[str], filesystem: Any) -> Any:
    """A ray.data.Dataset over Parquet shard files (columns index, label, sample)."""
    import ray.data

    return ray.data.read_parquet(paths, filesystem=filesystem)


PARQUET = Codec("parquet", "parquet", encode, decode, read_ray)
