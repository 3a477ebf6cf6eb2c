"""`seedshard verify URL`: check an output against its manifest, reading every byte.

For each shard the manifest lists: the file exists with the recorded size and sha256, decodes,
has the manifest's schema (format, stored dtype, sample shape, labels), the recorded row count,
indices exactly range(start, stop) at the place the shard plan puts them, and the seed,
sampler state, noise scheme and fingerprint of the job in its metadata; its sidecar agrees with the
manifest entry. The manifest's fingerprint is recomputed from its stored config, model, sampler state,
runtime and format version, and the plan comes from the stored config (not the manifest's own
num_samples). For a `complete` manifest also: every shard of the plan is there, and no other shard,
sidecar, temp file or data file (any name a dataset reader would pick up) lies beside them (or in
`__seedshard__/`). Both layouts (format version 1 and 2, see pipeline.output.layout) are checked, each
by its own rules. Outputs written before fingerprints (no `fingerprint` in the manifest) are checked
without them. Every problem is one line; nothing is written and nothing raises. Neither torch nor ray is
imported. A manifest that is not `complete` is itself a problem
(its job failed or is still running). Nothing is written.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import samplers.names

from ..config import JobConfig
from ..run.plan import iter_shards
from ..redact import redact_url, scrub
from .fs import list_names, list_temp, resolve_url
from .layout import SIDE_DIR, VERSION_KEY, side_root
from .manifest import Manifest, ManifestError, read_manifest
from .codecs import FORMATS
from .shards import load_sidecars, shard_metadata, sidecar_name, verify_shard


def verify_output(url: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Problems found under the output `url`, one line each (empty list: the output is whole and intact)."""
    options = storage_options or {}
    fs, root = resolve_url(url, options)
    try:
        manifest = read_manifest(fs, root)
    except ManifestError as e:
        return [scrub(str(e), options)]
    except Exception as e:  # noqa: BLE001 - unreachable storage: one clean line
        return [scrub(f"{redact_url(url)}: cannot read: {e}", options)]
    if manifest is None:
        return [f"{redact_url(url)}: no manifest.json (not a seedshard output, or its job never started)"]
    problems = _job_problems(manifest)
    cfg = _stored_config(manifest, problems)
    metadata = _expected_metadata(manifest, cfg, problems)
    planned = _planned(manifest, cfg, problems)
    for record in manifest.shards:
        if planned is not None and planned.get(record.index) != (record.start, record.stop):
            problems.append(f"{record.path}: shard {record.index} covers [{record.start}, {record.stop}), "
                            f"not where the shard plan puts it ({planned.get(record.index)})")
        if manifest.fingerprint is not None and record.fingerprint != manifest.fingerprint:
            problems.append(f"{record.path}: fingerprint {str(record.fingerprint)[:12]} in its manifest entry, "
                            f"the job's is {manifest.fingerprint[:12]}")
        problems += verify_shard(fs, root, record, schema=manifest.schema_, metadata=metadata)
    problems += _sidecar_problems(fs, root, manifest)
    if manifest.status == "complete" and planned is not None:
        missing = sorted(set(planned) - {r.index for r in manifest.shards})
        if missing:
            problems.append(f"{len(missing)} shard(s) of the plan missing from the complete manifest: {_indices(missing)}")
        problems += [f"{name}: temp file of an unfinished write" for name in list_temp(fs, root)]
        problems += _foreign_data_files(fs, root, manifest)
    return [scrub(p, options) for p in problems]


def summary(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """One line about a verified output: samples, shards, bytes."""
    fs, root = resolve_url(url, storage_options or {})
    m = read_manifest(fs, root)
    assert m is not None, f"{url}: no manifest"
    size = sum(s.bytes for s in m.shards)
    return (f"{redact_url(url)}: OK, {sum(s.rows for s in m.shards)} samples in {len(m.shards)} shard{'' if len(m.shards) == 1 else 's'} "
            f"({size / 1e6:.2f} MB), every sha256, schema and index range verified")


def _job_problems(manifest: Manifest) -> list[str]:
    """The manifest's own state: status, and whether its sampler state names a registered sampler and version."""
    problems = []
    if manifest.status != "complete":
        rows = sum(s.rows for s in manifest.shards)
        reason = f": {manifest.error}" if manifest.error else ""
        problems.append(f"manifest status is {manifest.status!r}, not 'complete' ({rows} of {manifest.num_samples} "
                        f"samples written){reason}")
    if problem := samplers.names.state_problem(manifest.sampler_state):  # torch-free: name and version only
        problems.append(f"manifest sampler_state cannot be loaded: {problem}")
    return problems


def _stored_config(manifest: Manifest, problems: list[str]) -> JobConfig | None:
    """The job config stored in the manifest (None, and a problem, when it is not a valid one)."""
    try:
        return JobConfig.model_validate(manifest.config)
    except ValueError as e:
        lines = [line.strip() for line in str(e).splitlines()]
        problems.append(f"manifest config is not a valid job config: {'; '.join(lines[:3])}")
        return None


def _expected_metadata(manifest: Manifest, cfg: JobConfig | None, problems: list[str]) -> dict[str, str] | None:
    """The key/value metadata every shard of this job carries, fingerprint included (None when the manifest
    cannot say); a problem when the manifest's fingerprint is not the one its own contents give."""
    if cfg is None:
        return None
    from ..run.fingerprint import fingerprint_fields, job_fingerprint

    try:
        if manifest.fingerprint is not None:
            fingerprint = job_fingerprint(fingerprint_fields(cfg, manifest.model, manifest.sampler_state,
                                                             manifest.noise_scheme, manifest.runtime,
                                                             manifest.format_version))
            if fingerprint != manifest.fingerprint:
                problems.append(f"manifest fingerprint {manifest.fingerprint[:12]} is not that of its own config, model, "
                                f"sampler state and runtime ({fingerprint[:12]})")
        # the scheme, fingerprint and format version the shards were written with
        metadata = shard_metadata(cfg, manifest.sampler_state, manifest.noise_scheme, manifest.fingerprint)
        return {**metadata, VERSION_KEY: str(manifest.format_version)}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        problems.append(f"manifest model or sampler_state is malformed ({type(e).__name__}: {e}); shard metadata not checked")
        return None


def _planned(manifest: Manifest, cfg: JobConfig | None, problems: list[str]) -> dict[int, tuple[int, int]] | None:
    """{shard index: (start, stop)} of the plan of the stored config (None when there is none); a problem
    when the manifest's num_samples is not the config's."""
    if cfg is None:
        problems.append("manifest has no valid config; shard placement and coverage not checked")
        return None
    if manifest.num_samples != cfg.run.num_samples:
        problems.append(f"manifest num_samples is {manifest.num_samples}, its config's run.num_samples {cfg.run.num_samples}")
    return {s.index: (s.start, s.stop) for s in iter_shards(cfg.run.num_samples, cfg.run.shard_size)}


def _foreign_data_files(fs: Any, root: str, manifest: Manifest) -> list[str]:
    """Files under the output that dataset readers would take for data but the manifest does not list."""
    return [f"{name}: a data file not in the complete manifest (readers of the output would pick it up)"
            for name in stray_data_files(fs, root, {r.path for r in manifest.shards})]


def stray_data_files(fs: Any, root: str, listed: set[str], subfolders_only: bool = False) -> list[str]:
    """Names (relative to `root`) of the files that dataset readers would take for data, besides `listed`: by
    extension (extra.parquet, Shard-00009.parquet) or by content (a Parquet file named extra.data), at the root or
    in a subfolder (pyarrow, pandas and HF datasets read folders recursively). Names starting with '.' and `__x__`
    folders (`__seedshard__`) are skipped by every reader; `shard-*` files at the root are the sidecar check's."""
    extensions = set(FORMATS.values()) | {"parquet", "arrow", "tar", "safetensors"}
    base = root.rstrip("/")
    try:
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        return []
    paths = []
    for entry in entries:
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if _skipped_by_readers(name):
            continue
        if entry["type"] == "directory" or (entry.get("islink") and fs.isdir(entry["name"])):  # readers follow links
            paths += fs.find(entry["name"])
        elif not subfolders_only and not name.startswith("shard-") and name not in listed:
            paths.append(entry["name"])
    found = []
    for path in sorted(paths):
        *folders, name = path[len(base) + 1:].split("/")
        if any(_skipped_by_readers(f) for f in folders) or name.startswith("."):
            continue
        if name.rsplit(".", 1)[-1].lower() in extensions or _is_parquet(fs, path):
            found.append("/".join([*folders, name]))
    return found


def _skipped_by_readers(folder: str) -> bool:
    """Whether every dataset reader skips a folder of this name ('.x'; '__x__', which HF datasets skips too)."""
    return folder.startswith(".") or (folder.startswith("__") and folder.endswith("__"))


def _is_parquet(fs: Any, path: str) -> bool:
    """True when the file starts with Parquet's magic bytes (pyarrow reads it whatever its name)."""
    try:
        with fs.open(path, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False


def _sidecar_problems(fs: Any, root: str, manifest: Manifest) -> list[str]:
    """Sidecars that disagree with the manifest (and, for a complete output, files it does not list)."""
    problems: list[str] = []
    sidecars = load_sidecars(fs, root, problems)
    listed = {r.index: r for r in manifest.shards}
    for index, record in listed.items():
        sidecar = sidecars.get(index)
        name = sidecar_name(record.path)
        if sidecar is None:
            problems.append(f"{name}: missing (the manifest lists shard {index}; a resumed job would regenerate it)")
        elif sidecar != record:
            fields = [f.name for f in dataclasses.fields(record) if getattr(sidecar, f.name) != getattr(record, f.name)]
            problems.append(f"{name}: disagrees with the manifest on {', '.join(fields)}")
    if manifest.status == "complete":
        for index in sorted(set(sidecars) - set(listed)):
            problems.append(f"{sidecar_name(sidecars[index].path)}: shard {index} is not in the complete manifest")
        sides = {sidecar_name(r.path) for r in sidecars.values()} | {sidecar_name(r.path) for r in manifest.shards}
        side = side_root(root, manifest.format_version)
        found = {name: side == root for name in list_names(fs, root, "shard-*")}  # name: may be a sidecar
        if side != root:
            found.update({f"{side[len(root) + 1:]}/{name}": True for name in list_names(fs, side, "shard-*")})
        for name, may_be_sidecar in found.items():
            if name not in {r.path for r in manifest.shards} and not (may_be_sidecar and name.rsplit("/", 1)[-1] in sides):
                problems.append(f"{name}: not in the complete manifest")
    return problems


def _indices(indices: list[int], limit: int = 10) -> str:
    text = ", ".join(map(str, indices[:limit]))
    return text + (f", ... ({len(indices) - limit} more)" if len(indices) > limit else "")
