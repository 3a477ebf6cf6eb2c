"""`seedshard verify URL`: check an output against its manifest, reading every byte.

For each shard the manifest lists: the file exists with the recorded size and sha256, decodes,
has the manifest's schema (format, stored dtype, sample shape, labels), the recorded row count,
indices exactly range(start, stop) at the place the shard plan puts them, and the seed,
sampler state and noise scheme of the job in its metadata; its sidecar agrees with the manifest
entry. For a `complete` manifest also: every shard of the plan is there, and no other shard,
sidecar or temp file lies beside them (or in `__seedshard__/`). Both layouts (format version 1 and 2,
see pipeline.output.layout) are checked, each by its own rules. A manifest that is not `complete` is itself a problem
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
from .layout import VERSION_KEY, side_root
from .manifest import Manifest, ManifestError, read_manifest
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
    metadata = _expected_metadata(manifest, problems)
    planned = _planned(manifest, problems)
    for record in manifest.shards:
        if planned is not None and planned.get(record.index) != (record.start, record.stop):
            problems.append(f"{record.path}: shard {record.index} covers [{record.start}, {record.stop}), "
                            f"not where the shard plan puts it ({planned.get(record.index)})")
        problems += verify_shard(fs, root, record, schema=manifest.schema_, metadata=metadata)
    problems += _sidecar_problems(fs, root, manifest)
    if manifest.status == "complete" and planned is not None:
        missing = sorted(set(planned) - {r.index for r in manifest.shards})
        if missing:
            problems.append(f"{len(missing)} shard(s) of the plan missing from the complete manifest: {_indices(missing)}")
        problems += [f"{name}: temp file of an unfinished write" for name in list_temp(fs, root)]
    return [scrub(p, options) for p in problems]


def summary(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """One line about a verified output: samples, shards, bytes."""
    fs, root = resolve_url(url, storage_options or {})
    m = read_manifest(fs, root)
    assert m is not None, f"{url}: no manifest"
    size = sum(s.bytes for s in m.shards)
    return (f"{redact_url(url)}: OK, {sum(s.rows for s in m.shards)} samples in {len(m.shards)} shards "
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


def _expected_metadata(manifest: Manifest, problems: list[str]) -> dict[str, str] | None:
    """The key/value metadata every shard of this job carries (None when the config cannot be read)."""
    try:
        cfg = JobConfig.model_validate(manifest.config)
    except ValueError as e:
        problems.append(f"manifest config is not a valid job config: {str(e).splitlines()[0]}")
        return None
    metadata = shard_metadata(cfg, manifest.sampler_state, manifest.noise_scheme)  # the scheme the shards were written with
    return {**metadata, VERSION_KEY: str(manifest.format_version)}


def _planned(manifest: Manifest, problems: list[str]) -> dict[int, tuple[int, int]] | None:
    """{shard index: (start, stop)} of the job's shard plan (None when the manifest does not say)."""
    shard_size = manifest.config.get("run", {}).get("shard_size")
    if not isinstance(shard_size, int) or shard_size <= 0 or manifest.num_samples <= 0:
        problems.append(f"manifest has no usable run.shard_size ({shard_size!r}); shard placement not checked")
        return None
    return {s.index: (s.start, s.stop) for s in iter_shards(manifest.num_samples, shard_size)}


def _sidecar_problems(fs: Any, root: str, manifest: Manifest) -> list[str]:
    """Sidecars that disagree with the manifest (and, for a complete output, files it does not list)."""
    sidecars = load_sidecars(fs, root)
    listed = {r.index: r for r in manifest.shards}
    problems = []
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
