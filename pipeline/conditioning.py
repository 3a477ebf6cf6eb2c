"""Conditioning tables: row i of a Parquet table conditions sample i.

    conditioning:
      table: s3://bucket/imagenet-1m-labels.parquet
      columns: {class_labels: label, encoder_hidden_states: emb}   # network keyword: column

Each mapped column becomes the network keyword of the same batch's rows: integer columns as int64 (N,), float
columns as float32 (N,), fixed-size tensors (`arrow.fixed_shape_tensor`) and nested lists of equal lengths as
float32 (N, ...) arrays (e.g. precomputed text-encoder embeddings (N, seq, dim)). Guidance sees them like any
other keyword (classifier-free guidance nulls `class_labels`). A text column (prompts) needs
`conditioning.text_encoder`, a transformers text model folder that encodes each batch's prompts on the actor
(`pipeline.text_encoder`; its files' sha256 joins the model identity). The driver checks the table before Ray
starts (the columns exist, the rows cover run.num_samples, text columns have an encoder) and its sha256 joins the
model identity in the manifest, so a resume with another table is refused. Actors read only the row groups their
batches need.

Classifier-free guidance on the table's keywords (Ho & Salimans 2022, as diffusers' `negative_prompt`): the guide
is the network itself, seeing `negative_columns` (keyword -> a column of per-row negatives, e.g. null or negative
prompt embeddings) in place of the mapped columns and, for every text column, the encoding of `negative_prompt`
("" is Stable Diffusion's unconditional embedding); keywords without a negative stay as they are.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from .config import ConfigError
from .redact import redact_url, scrub


class ConditioningError(ConfigError):
    """A conditioning table that cannot condition this job: unreadable, too short, missing a column (bad input:
    exit status 2)."""


def _open(url: str, storage_options: dict[str, Any] | None) -> Any:
    import fsspec

    return fsspec.open(url, "rb", **(storage_options or {})).open()


def _sha256(f: Any) -> str:
    """sha256 of an open file's bytes from its start; the file is left at its start."""
    h = hashlib.sha256()
    f.seek(0)
    for chunk in iter(lambda: f.read(1 << 24), b""):
        h.update(chunk)
    f.seek(0)
    return h.hexdigest()


def _footer_sha256(f: Any) -> str:
    """sha256 of an open Parquet file's size and footer (its metadata: every column chunk's offsets, sizes and
    statistics), a few kB however large the table: what a worker checks, as a rewritten table changes it; the file is
    left at its start."""
    size = f.seek(0, 2)
    f.seek(max(size - 8, 0))
    length = int.from_bytes(f.read(8)[:4], "little")
    f.seek(max(size - 8 - length, 0))
    footer = f.read(length)
    f.seek(0)
    return hashlib.sha256(size.to_bytes(8, "little") + footer).hexdigest()


def table_identity(cfg: Any) -> dict[str, Any] | None:
    """{'table': redacted URL, 'columns', 'rows', 'sha256'} of the job's conditioning table (None without one), after
    checking it has the mapped columns and at least run.num_samples rows."""
    cond = cfg.conditioning
    if cond is None:
        return None
    import pyarrow.parquet as pq

    url, options = cond.table, cfg.run.storage_options
    try:
        with _open(url, options) as f:
            sha256, footer_sha256 = _sha256(f), _footer_sha256(f)
            meta = pq.ParquetFile(f).metadata
            schema, rows = meta.schema.to_arrow_schema(), meta.num_rows
    except Exception as e:  # noqa: BLE001 - fsspec and pyarrow raise many types; report one line
        raise ConditioningError(f"conditioning.table {redact_url(url)!r}: cannot read "
                                f"({scrub(f'{type(e).__name__}: {e}', options)})") from None
    for name, mapping in (("columns", cond.columns), ("negative_columns", cond.negative_columns)):
        if missing := sorted(set(mapping.values()) - set(schema.names)):
            raise ConditioningError(f"conditioning.{name}: {missing} not in conditioning.table {redact_url(url)!r}; "
                                    f"its columns: {', '.join(schema.names)}")
    if rows < cfg.run.num_samples:
        raise ConditioningError(f"conditioning.table {redact_url(url)!r} has {rows} rows, fewer than "
                                f"run.num_samples={cfg.run.num_samples} (row i conditions sample i)")
    mapped = {*cond.columns.values(), *cond.negative_columns.values()}
    if nulls := _null_counts(meta, mapped):
        raise ConditioningError(f"conditioning.table {redact_url(url)!r}: column(s) "
                                f"{', '.join(f'{c!r} has {n} null rows' for c, n in nulls.items())}; every mapped row "
                                "needs a value (row i conditions sample i)")
    if "class_labels" in cond.columns:
        _check_class_labels(url, options, cond.columns["class_labels"], cfg.run.num_samples, cfg.model.num_classes)
    text = sorted(c for c in mapped if _is_text(schema.field(c).type))
    if text and cond.text_encoder is None:
        raise _no_encoder(text)
    if not text and cond.text_encoder is not None:
        raise ConditioningError(f"conditioning.text_encoder: no mapped column is text (columns: {dict(cond.columns)}); "
                                f"map a prompt column or remove it (got {redact_url(cond.text_encoder)!r})")
    prompts = [c for key, c in cond.columns.items()
               if key not in cond.negative_columns and _is_text(schema.field(c).type)]  # what negative_prompt replaces
    if cond.negative_prompt is not None and not any(_is_text(schema.field(c).type) for c in cond.columns.values()):
        raise ConditioningError(f"conditioning.negative_prompt: no mapped column is text (columns: "
                                f"{dict(cond.columns)}); it replaces prompts, so map one, or give embedding "
                                "columns' negatives in conditioning.negative_columns")
    if cond.negative_prompt is not None and not prompts:
        raise ConditioningError(f"conditioning.negative_prompt: {cond.negative_prompt!r} would never be used: every "
                                f"text keyword has a negative column ({dict(cond.negative_columns)}); remove one")
    identity = {"table": redact_url(url), "columns": dict(cond.columns), "rows": rows, "sha256": sha256,
                "footer_sha256": footer_sha256}  # workers check this (a full hash each would re-read the table)
    if cond.negative_prompt is not None:
        identity["negative_prompt"] = cond.negative_prompt
    if cond.negative_columns:
        identity["negative_columns"] = dict(cond.negative_columns)
    if cond.text_encoder is not None:
        from .text_encoder import folder_sha256

        identity["text_encoder"] = {"path": redact_url(cond.text_encoder),
                                    "sha256": folder_sha256(cond.text_encoder, options)}
    return identity


def _check_class_labels(url: str, options: dict[str, Any] | None, column: str, rows: int,
                        num_classes: int | None) -> None:
    """ConditioningError unless the first `rows` values of the class label column are integers (stored as the samples'
    labels), in [0, num_classes) with model.num_classes (model.null_label is num_classes: a table label there would
    make its sample unconditional)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _open(url, options) as f:
        values = pq.ParquetFile(f).read(columns=[column])[column].slice(0, rows)
    kind = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
    if not pa.types.is_integer(kind):
        raise ConditioningError(f"conditioning.columns: class_labels column {column!r} is {values.type}; class labels "
                                "are an integer column" + (f" (model.num_classes={num_classes})" if num_classes else ""))
    labels = column_array(values)
    if num_classes is not None and len(labels) and not 0 <= labels.min() <= labels.max() < num_classes:
        bad = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
        raise ConditioningError(f"conditioning.columns: class_labels column {column!r} holds {labels[bad]} (row "
                                f"{bad}), outside [0, {num_classes}) for model.num_classes={num_classes} (model.null_label "
                                "is the classifier-free guide's)")


def _null_counts(meta: Any, columns: set[str]) -> dict[str, int]:
    """{column: null rows} of the scalar and text columns among `columns`, from the row groups' statistics (columns
    without statistics, and nested ones, are checked as each batch reads them)."""
    counts: dict[str, int] = {}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for j in range(group.num_columns):
            chunk = group.column(j)
            if chunk.path_in_schema in columns and chunk.is_stats_set and chunk.statistics.has_null_count:
                counts[chunk.path_in_schema] = counts.get(chunk.path_in_schema, 0) + chunk.statistics.null_count
    return {c: n for c, n in sorted(counts.items()) if n}


def _no_encoder(text: list[str]) -> ConditioningError:
    return ConditioningError(f"conditioning.columns: text column(s) {text} need conditioning.text_encoder "
                             "(a transformers text model folder) to become network keywords (got None)")


def _is_text(t: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def column_array(column: Any) -> np.ndarray:
    """A pyarrow column as a NumPy array (n, ...): int64 / float32 scalars, float32 tensors from fixed-shape
    tensor or (nested) list columns of equal lengths, or str objects from a text column."""
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(column.type):  # categorical columns (pandas, polars): their values
        column = column.dictionary_decode()
    n = len(column)
    if column.null_count and not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
        raise ConditioningError(f"conditioning: {column.null_count} of {n} rows are null; every row needs a value "
                                "(row i conditions sample i)")  # variable-length lists: the ragged-or-null check
    if _is_text(column.type):
        return np.array(column.to_pylist(), dtype=object)
    if isinstance(column.type, pa.FixedShapeTensorType):
        return _finite(column.to_numpy_ndarray().astype(np.float32, copy=False))
    values = column
    while pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type) or \
            pa.types.is_large_list(values.type):
        if not pa.types.is_fixed_size_list(values.type):  # every row (and sub-list) the same length, none null
            import pyarrow.compute as pc

            lengths = pc.min_max(pc.list_value_length(values))
            low, high = lengths["min"].as_py(), lengths["max"].as_py()
            if values.null_count or low != high:
                raise ConditioningError(f"conditioning: a list column's rows are ragged or null (lengths {low} to "
                                        f"{high}, {values.null_count} null); every row needs the same shape")
        values = values.flatten()
    if values.null_count:  # inside the rows of a list column
        raise ConditioningError(f"conditioning: a list column holds {values.null_count} null values; every value "
                                "must be a number")
    flat = values.to_numpy(zero_copy_only=False)
    if flat.dtype == np.uint64 and flat.size and flat.max() > np.iinfo(np.int64).max:
        raise ConditioningError(f"conditioning: an unsigned column holds {flat.max()}, beyond int64")
    if values is column:
        return _finite(flat.astype(np.int64 if np.issubdtype(flat.dtype, np.integer) else np.float32, copy=False))
    if n == 0 or flat.size % n:
        raise ConditioningError(f"conditioning: a list column's rows differ in length ({flat.size} values, {n} rows)")
    inner = _inner_shape(column, flat.size // n)
    return _finite(flat.astype(np.float32, copy=False).reshape((n, *inner)))


def _finite(array: np.ndarray) -> np.ndarray:
    """`array`, after checking a float one holds only finite values (NaN and Inf, also from float64 beyond float32)."""
    if array.dtype == np.float32 and not (finite := np.isfinite(array)).all():
        raise ConditioningError(f"conditioning: {array.size - int(finite.sum())} non-finite values (NaN or Inf, or "
                                "beyond float32); every value must be a finite number")
    return array


def _inner_shape(column: Any, per_row: int) -> tuple[int, ...]:
    """The shape of one row of a nested list column, from its first row."""
    first = column[0].as_py()
    shape = []
    while isinstance(first, list):
        shape.append(len(first))
        first = first[0] if first else None
    if int(np.prod(shape)) != per_row:
        raise ConditioningError(f"conditioning: a list column's rows are ragged (first row {shape}, {per_row} values)")
    return tuple(shape)


class ConditioningTable:
    """The mapped columns of a Parquet table, read a row group at a time: `kwargs(start, stop)` -> network keywords,
    `guide_kwargs(start, stop)` -> the classifier-free guide's negatives."""

    def __init__(self, url: str, columns: dict[str, str], storage_options: dict[str, Any] | None = None,
                 text_encoder: Any = None, *, negative_prompt: str | None = None,
                 negative_columns: dict[str, str] | None = None, footer_sha256: str | None = None) -> None:
        """`text_encoder`: prompts -> tensor (`pipeline.text_encoder.TextEncoder`) for the text columns;
        `footer_sha256`: the table the driver hashed (table_identity), checked on the opened file (workers must read
        that table; its footer, not every byte: a worker reads only its row groups)."""
        import pyarrow.parquet as pq

        self.columns, self.text_encoder = dict(columns), text_encoder
        self.negative_prompt, self.negative_columns = negative_prompt, dict(negative_columns or {})
        self._negative_embedding: dict[str, torch.Tensor] = {}  # per device
        f = _open(url, storage_options)
        if footer_sha256 is not None and (found := _footer_sha256(f)) != footer_sha256:
            raise ConditioningError(f"conditioning.table {redact_url(url)!r} changed since the job started: its size "
                                    f"and footer hash to {found[:12]}, the job's to {footer_sha256[:12]} (row i of the "
                                    "table it hashed conditions sample i); restore it or start a new output")
        self.file = pq.ParquetFile(f)
        schema = self.file.schema_arrow
        text = sorted(c for c in {*self.columns.values(), *self.negative_columns.values()}
                      if c in schema.names and _is_text(schema.field(c).type))
        if text and text_encoder is None:  # a SamplingHandle skips table_identity's checks
            raise _no_encoder(text)
        meta = self.file.metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._cached: tuple[int, int, dict[str, np.ndarray]] | None = None

    def _rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        if stop > self.offsets[-1]:
            raise ConditioningError(f"conditioning.table has {int(self.offsets[-1])} rows; samples [{start}, {stop}) "
                                    "need more (row i conditions sample i)")
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        last = int(np.searchsorted(self.offsets, stop, side="left"))  # row groups first .. last - 1
        if self._cached is None or self._cached[:2] != (first, last):
            names = sorted({*self.columns.values(), *self.negative_columns.values()})
            table = self.file.read_row_groups(range(first, last), columns=names)
            arrays = {}
            for c in names:
                try:
                    arrays[c] = column_array(table[c])
                except ConditioningError as e:
                    raise ConditioningError(f"conditioning.table column {c!r} (rows {int(self.offsets[first])} to "
                                            f"{int(self.offsets[last])}): {str(e).removeprefix('conditioning: ')}"
                                            ) from None
            self._cached = (first, last, arrays)
        offset = int(self.offsets[first])
        return {c: a[start - offset:stop - offset] for c, a in self._cached[2].items()}

    def label_rows(self, stop: int) -> list[int]:
        """The rows of the smallest and the largest class label among rows [0, stop) (what a preflight probes: an
        embedding table too small for them fails there, not on a worker); [] without a class_labels column."""
        column = self.columns.get("class_labels")
        if column is None or stop <= 0:
            return []
        labels = column_array(self.file.read(columns=[column])[column].slice(0, stop))
        return sorted({int(labels.argmin()), int(labels.argmax())})

    @property
    def negatives(self) -> bool:
        """Whether the guide sees its own keywords (`guide_kwargs`)."""
        return self.negative_prompt is not None or bool(self.negative_columns)

    def _keywords(self, mapping: dict[str, str], rows: dict[str, np.ndarray], device: torch.device | str
                  ) -> dict[str, torch.Tensor]:
        return {key: self.text_encoder(rows[column].tolist(), device) if rows[column].dtype == object
                else torch.from_numpy(np.array(rows[column])).to(device)  # a copy: arrow buffers are read-only
                for key, column in mapping.items()}

    def kwargs(self, start: int, stop: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """{keyword: tensor (stop - start, ...)} of rows [start, stop) on `device`; text columns encoded."""
        return self._keywords(self.columns, self._rows(start, stop), device)

    def guide_kwargs(self, start: int, stop: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The keywords the classifier-free guide sees instead for rows [start, stop): each negative column's rows,
        and for each other text column the encoding of `negative_prompt` (made once, the same for every row)."""
        rows = self._rows(start, stop)
        out = self._keywords(self.negative_columns, rows, device)
        if self.negative_prompt is not None:
            for key, column in self.columns.items():
                if key not in out and rows[column].dtype == object:
                    if str(device) not in self._negative_embedding:
                        self._negative_embedding[str(device)] = self.text_encoder([self.negative_prompt], device)
                    embedding = self._negative_embedding[str(device)]
                    out[key] = embedding.expand(stop - start, *embedding.shape[1:]).contiguous()  # nets may .view() it
        return out


def load_table(cfg: Any, identity: dict[str, Any] | None = None) -> ConditioningTable | None:
    """The job's conditioning table (None without one), opened for reading, with its text encoder loaded; `identity`
    (the driver's table_identity): the table's and the encoder's bytes must have its sha256s (a worker's are the ones
    the job recorded)."""
    cond = cfg.conditioning
    if cond is None:
        return None
    identity = identity or {}
    encoder = None
    if cond.text_encoder is not None:
        from .text_encoder import TextEncoder

        encoder_sha256 = (identity.get("text_encoder") or {}).get("sha256")
        encoder = TextEncoder(cond.text_encoder, cfg.run.storage_options, encoder_sha256)
    return ConditioningTable(cond.table, cond.columns, cfg.run.storage_options, encoder,
                             negative_prompt=cond.negative_prompt, negative_columns=cond.negative_columns,
                             footer_sha256=identity.get("footer_sha256"))
