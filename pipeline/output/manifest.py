"""``manifest.json``: the record of one output directory, written by the driver.

It lies in ``__seedshard__/`` (format version 2) or, in outputs of format version 1, beside the
shards (see pipeline.output.layout).

It holds the format version, the job's status, the resolved config, the sampler state,
the model identity (factory, checkpoint sha256), the shard schema, the noise scheme, the job
fingerprint (pipeline.run.fingerprint; absent in outputs written before it) and
one ShardRecord per committed shard (sorted by index). Shards are committed with their
own sidecars first (pipeline.output.shards); the manifest is written last, atomically, and is
what readers use to find samples without knowing the shard layout.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

import fsspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import strict_json
from .fs import put_atomic
from .layout import FORMAT_VERSION, FORMAT_VERSIONS, MANIFEST_NAME, side_path
from .shards import ShardRecord

__all__ = ["FORMAT_VERSION", "MANIFEST_NAME", "Manifest", "ManifestError", "manifest_json", "read_manifest",
           "write_manifest"]


class ManifestError(ValueError):
    """A manifest that cannot be read: corrupt, invalid, or of an unknown format version."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Manifest(BaseModel):
    """Contents of ``manifest.json``; the JSON key of ``schema_`` is ``schema``."""

    # ser_json_inf_nan: keeps non-finite floats as floats in model_dump(mode="json"), for strict_json
    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True,
                              ser_json_inf_nan="constants")

    format_version: int = FORMAT_VERSION
    status: Literal["running", "complete", "failed", "interrupted"]
    config: dict[str, Any]
    sampler_state: dict[str, Any]
    model: dict[str, Any]
    schema_: dict[str, Any] = Field(alias="schema")
    noise_scheme: str
    fingerprint: str | None = None  # None: written before fingerprints (pipeline.run.fingerprint)
    runtime: dict[str, Any] = {}  # torch version and device type, part of the fingerprint
    num_samples: int = Field(ge=0)
    shards: list[ShardRecord] = []
    error: str | None = None
    metrics: dict[str, Any] = {}
    created: str = Field(default_factory=_now)
    updated: str = Field(default_factory=_now)

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version not in FORMAT_VERSIONS:
            raise ValueError(f"format_version {version!r}; this seedshard reads {FORMAT_VERSIONS}")
        return version

    @field_validator("shards")
    @classmethod
    def _sorted_unique(cls, shards: list[ShardRecord]) -> list[ShardRecord]:
        shards = sorted(shards, key=lambda s: s.index)
        seen = [s.index for s in shards]
        if len(set(seen)) != len(seen):
            raise ValueError(f"duplicate shard indices in {seen}")
        return shards

    @model_validator(mode="after")
    def _shards_fit(self) -> "Manifest":
        end = 0
        for s in self.shards:
            if "/" in s.path or s.path.startswith("."):
                raise ValueError(f"shard {s.index} path {s.path!r} must be a plain file name")
            if not end <= s.start < s.stop <= self.num_samples:
                raise ValueError(f"shard {s.index} covers [{s.start}, {s.stop}), which overlaps a previous "
                                 f"shard or leaves [0, {self.num_samples})")
            end = s.stop
        return self


def manifest_json(manifest: Manifest) -> str:
    """The manifest as strict JSON (RFC 8259: non-finite floats tagged, see ``strict_json``), indented."""
    return strict_json.dumps(manifest.model_dump(mode="json"), indent=2)


def write_manifest(fs: fsspec.AbstractFileSystem, root: str, manifest: Manifest) -> Manifest:
    """Atomically write ``manifest.json`` of output ``root`` (where its format version puts it) with ``updated``
    set to now; returns what was written."""
    manifest = manifest.model_copy(update={"updated": _now()})
    path = side_path(root, MANIFEST_NAME, manifest.format_version)
    put_atomic(fs, path, (manifest_json(manifest) + "\n").encode())
    return manifest


def read_manifest(fs: fsspec.AbstractFileSystem, root: str) -> Manifest | None:
    """The manifest of output ``root`` (``__seedshard__/manifest.json``, else ``manifest.json`` of format
    version 1), or None when there is none; ManifestError when it is unusable."""
    for place in sorted(FORMAT_VERSIONS, reverse=True):
        path = side_path(root, MANIFEST_NAME, place)
        try:
            raw = fs.cat_file(path)
            break
        except FileNotFoundError:
            continue
    else:
        return None
    where = fs.unstrip_protocol(path)
    try:
        obj = strict_json.loads(raw)
    except ValueError as e:
        raise ManifestError(f"{where} is not valid JSON ({e})") from None
    version = obj.get("format_version") if isinstance(obj, dict) else None
    if version not in FORMAT_VERSIONS:
        raise ManifestError(f"{where} has format_version {version!r}; this seedshard reads format_version "
                            f"{' or '.join(map(str, FORMAT_VERSIONS))}")
    if side_path(root, MANIFEST_NAME, version) != path:
        raise ManifestError(f"{where} has format_version {version!r}, whose manifest lies at "
                            f"{fs.unstrip_protocol(side_path(root, MANIFEST_NAME, version))}")
    try:
        return Manifest.model_validate(obj)
    except ValidationError as e:
        errors = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ManifestError(f"{where} is invalid: {errors}") from None
