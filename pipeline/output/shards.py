"""Shard files: naming, encoding with the format's codec, atomic commit, verification.

Layout of an output directory (``root``; format version 1 keeps side files beside the shards,
see pipeline.output.layout)::

    shard-00000.parquet                the samples of shard 0 (or shard-00000.safetensors)
    __seedshard__/shard-00000.json     its sidecar: the ShardRecord, written after the data file
    __seedshard__/manifest.json        written by the driver (see pipeline.output.manifest)

A shard counts as finished only when its sidecar exists and the data file's size and
sha256 match it; a resumed job can trust such shards without a manifest. Both files are
written atomically (``fs.put_atomic``).

Every shard carries str key/value metadata: the job's (seed, sampler, ...; ``shard_metadata``)
plus ``seedshard.format_version``. The file layouts are in ``codecs/``, the stored dtypes in
``dtypes``. The bytes of a shard are a deterministic function of its contents and metadata
(for a given pyarrow / safetensors version: Parquet records the writer's version string).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Any, Sequence

import fsspec
import numpy as np

from ..redact import scrub
from . import strict_json
from .codecs import FORMATS, LATENT, ShardData, codec, format_of
from .dtypes import SAMPLE_DTYPES
from .fs import join_path, list_names, put_atomic
from .layout import FORMAT_VERSION, FORMAT_VERSIONS, VERSION_KEY, output_version, side_path, side_root
from .record import ShardRecord

__all__ = ["FINGERPRINT_KEY", "FORMAT_VERSION", "ShardRecord", "VERSION_KEY", "commit_shard", "decode_shard", "encode_shard",
           "load_sidecars", "shard_metadata", "shard_name", "shard_schema", "sidecar_name", "verify_shard"]

log = logging.getLogger(__name__)


FINGERPRINT_KEY = "seedshard.fingerprint"
SAMPLER_STATE_KEY = "seedshard.sampler_state"  # strict JSON (``strict_json``); older shards hold a bare -Infinity
LATENT_DTYPE = "float32"  # stored latents keep the sampler's float32 output, whatever run.dtype


def shard_metadata(cfg: Any, sampler_state: dict[str, Any], noise_scheme: str,
                   fingerprint: str | None = None) -> dict[str, str]:
    """Key/value metadata of every shard of job ``cfg``: what a reader needs to know what the samples mean,
    and the job's fingerprint (pipeline.run.fingerprint) when given."""
    fingerprint_entry = {FINGERPRINT_KEY: fingerprint} if fingerprint is not None else {}
    return {**fingerprint_entry,
        "seedshard.seed": str(cfg.run.seed),
        "seedshard.sampler": sampler_state["name"],
        SAMPLER_STATE_KEY: strict_json.dumps(sampler_state, sort_keys=True),
        "seedshard.noise_scheme": noise_scheme,
        "seedshard.dtype": cfg.run.dtype,
    }


def shard_schema(fmt: str, dtype: str, shape: Sequence[int], labeled: bool,
                 latent_shape: Sequence[int] | None = None) -> dict[str, Any]:
    """The manifest's ``schema`` entry: format, stored dtype, one sample's shape, labels or not, and with
    ``latent_shape`` (run.store_latents) the stored latents' ``latent: {shape, dtype: float32}``."""
    if fmt not in FORMATS or dtype not in SAMPLE_DTYPES:
        raise ValueError(f"format {fmt!r} / dtype {dtype!r}; allowed: {', '.join(FORMATS)} / {', '.join(SAMPLE_DTYPES)}")
    schema = {"format": fmt, "dtype": dtype, "shape": [int(d) for d in shape], "labeled": labeled}
    if latent_shape is not None:
        schema[LATENT] = {"shape": [int(d) for d in latent_shape], "dtype": LATENT_DTYPE}
    return schema


def shard_name(index: int, fmt: str) -> str:
    """``shard-00000.parquet``: the data file name of shard ``index``."""
    return f"shard-{index:05d}.{codec(fmt).ext}"


def sidecar_name(name: str) -> str:
    """``shard-00000.json`` for data file ``shard-00000.parquet``."""
    return name.rsplit(".", 1)[0] + ".json"


def encode_shard(
    indices: np.ndarray,
    labels: np.ndarray | None,
    samples: np.ndarray,
    fmt: str,
    metadata: dict[str, str],
    version: int = FORMAT_VERSION,
    latents: np.ndarray | None = None,
) -> bytes:
    """Serialize one shard; the bytes depend only on the arguments.

    indices: (rows,) int64; labels: (rows,) int64 or None; samples: (rows, *shape) in a
    stored dtype; metadata: str -> str (e.g. seed, sampler name); version: the output's format
    version (1: the storage of older outputs, for resuming them); latents: (rows, *latent shape)
    float32, the samples before decoding (run.store_latents), or None.
    """
    assert version in FORMAT_VERSIONS, f"format version {version} not in {FORMAT_VERSIONS}"
    rows = len(samples)
    assert samples.ndim >= 2, f"samples must be (rows, *shape), got {samples.shape}"
    assert samples.dtype.name in SAMPLE_DTYPES, f"samples dtype {samples.dtype} not in {SAMPLE_DTYPES}"
    assert indices.shape == (rows,), f"indices {indices.shape} vs samples {samples.shape}"
    assert labels is None or labels.shape == (rows,), f"labels {labels.shape} vs samples {samples.shape}"
    assert latents is None or (len(latents) == rows and latents.dtype == LATENT_DTYPE), \
        f"latents {latents.shape} {latents.dtype} vs samples {samples.shape}"
    bad = {k: v for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))}
    if bad:
        raise ValueError(f"shard metadata must map str to str, got {bad!r}")
    encode = codec(fmt).encode
    meta = dict(sorted({**metadata, VERSION_KEY: str(version)}.items()))
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    labels = None if labels is None else np.ascontiguousarray(labels, dtype=np.int64)
    latents = None if latents is None else np.ascontiguousarray(latents)
    return encode(indices, labels, np.ascontiguousarray(samples), meta, latents)


def decode_shard(data: bytes, fmt: str) -> ShardData:
    """Inverse of ``encode_shard``; raises ValueError when the bytes are not a valid shard."""
    shard = codec(fmt).decode(data)
    version = shard.metadata.get(VERSION_KEY)
    if version not in [str(v) for v in FORMAT_VERSIONS]:
        raise ValueError(f"shard {VERSION_KEY} is {version!r}; this version reads {' or '.join(map(str, FORMAT_VERSIONS))}")
    return shard


def commit_shard(fs: fsspec.AbstractFileSystem, root: str, name: str, data: bytes, record: dict,
                 version: int | None = None) -> ShardRecord:
    """Atomically write data file ``name`` and then its sidecar; return the ShardRecord.

    ``record`` gives ``index``, ``start``, ``stop`` and optionally ``rows`` (default
    stop - start); ``path``, ``bytes`` and ``sha256`` are filled in here. The sidecar goes where
    the output's layout (``version``; default: the one found at ``root``) puts side files.
    """
    version = output_version(fs, root) if version is None else version
    fields = {"rows": record["stop"] - record["start"], **record}
    rec = ShardRecord(**fields, path=name, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    put_atomic(fs, join_path(root, name), data, temp_dir=side_root(root, version))
    put_atomic(fs, side_path(root, sidecar_name(name), version),
               (json.dumps(dataclasses.asdict(rec), sort_keys=True) + "\n").encode())
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
        if shard.latents is not None or LATENT in schema:
            found[LATENT] = None if shard.latents is None else {"shape": [int(d) for d in shard.latents.shape[1:]],
                                                                 "dtype": shard.latents.dtype.name}
            if shard.latents is not None and len(shard.latents) != len(shard.samples):
                problems.append(f"{record.path}: {len(shard.latents)} latents for {len(shard.samples)} samples")
        wrong = [f"{k} {found[k]!r} (expected: {schema.get(k)!r})" for k in found if found[k] != schema.get(k)]
        if wrong:
            problems.append(f"{record.path}: schema differs: {', '.join(wrong)}")
    for key, value in (metadata or {}).items():
        found = shard.metadata.get(key)
        if found != value and not (key == SAMPLER_STATE_KEY and _same_json(found, value)):
            problems.append(f"{record.path}: metadata {key} is {_short(found)}, expected {_short(value)}")
    return problems


def _same_json(a: str | None, b: str) -> bool:
    """Whether two JSON texts hold the same value (a bare -Infinity equal to its strict tag)."""
    try:
        return strict_json.dumps(strict_json.loads(a), sort_keys=True) == \
            strict_json.dumps(strict_json.loads(b), sort_keys=True)
    except (TypeError, ValueError):
        return False


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_sidecars(fs: fsspec.AbstractFileSystem, root: str, problems: list[str] | None = None) -> dict[int, ShardRecord]:
    """The ShardRecords of all sidecars of the output at ``root`` (in its layout), by shard index (unreadable
    ones skipped, and listed in ``problems`` when given)."""
    records = {}
    for name, path in list_names(fs, side_root(root, output_version(fs, root)), "shard-*.json").items():
        try:
            rec = ShardRecord(**json.loads(fs.cat_file(path)))
            if sidecar_name(rec.path) != name:
                raise ValueError(f"describes {rec.path!r}")
        except (ValueError, TypeError) as e:
            log.warning("ignoring sidecar %s: %s", name, e)
            if problems is not None:
                problems.append(f"{name}: unreadable sidecar: {e}")
            continue
        records[rec.index] = rec
    return dict(sorted(records.items()))
