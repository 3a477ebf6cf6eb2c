"""What an existing output allows: resume the same job, refuse another, or start afresh.

`check_output` only reads: it returns the shards a previous run of this same job committed that
still verify and carry its fingerprint, and refuses another job's output (JobError naming each field
of the fingerprint that differs, old -> new). What does not change bytes (resources, reporting,
metrics, on_nonfinite, grid, a checkpoint's URL when its weights are the same) may change; a higher
run.num_samples grows a job (the shards of the old plan that stay whole are kept), a lower one is refused. `begin_output` is the first write, called
once every check passed and the workers are up.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from ..config import JobConfig, config_diff
from ..decoder import stored_shape
from ..output.fs import cleanup_temp, open_output
from ..output.layout import job_version
from ..output.manifest import Manifest, ManifestError, read_manifest, write_manifest
from ..output.shards import ShardRecord, load_sidecars, shard_metadata, shard_name, shard_schema, verify_shard
from ..redact import redact_options, redact_url
from .errors import JobError
from .fingerprint import fingerprint_diff, fingerprint_fields, job_fingerprint, job_runtime
from .owned import refuse_data_in_subfolders, refuse_foreign_shards, refuse_nested_output, remove_owned
from .plan import num_shards, shard_for

log = logging.getLogger(__name__)


def manifest_config(cfg: JobConfig) -> dict[str, Any]:
    """The resolved config as stored in the manifest: credentials in run.storage_options and in URLs masked."""
    config = cfg.resolved()
    config["run"]["storage_options"] = redact_options(config["run"]["storage_options"])
    config["run"]["output"] = redact_url(config["run"]["output"])
    for model in (config["model"], config["model"].get("guide")):
        if model and model.get("checkpoint"):
            model["checkpoint"] = redact_url(model["checkpoint"])
    if config.get("conditioning"):
        config["conditioning"]["table"] = redact_url(config["conditioning"]["table"])
    if fid := config["metrics"].get("fid"):  # the reference and the extractor's weights: maybe presigned URLs
        if fid.get("ref"):
            fid["ref"] = redact_url(fid["ref"])
        fid["extractor_kwargs"] = {k: redact_url(v) if isinstance(v, str) else v for k, v in fid["extractor_kwargs"].items()}
    return config


def resolve_noise_scheme(fs: Any, root: str, cfg: JobConfig) -> JobConfig:
    """`cfg` with run.noise_scheme `auto` made a name: the scheme of the output's manifest when a run resumes it
    (an output keeps the noise it was written with), else the default (new outputs get the newest scheme)."""
    if cfg.run.noise_scheme != "auto":
        return cfg
    from samplers.names import DEFAULT_NOISE_SCHEME
    from samplers.noise import scheme_named

    existing = None if cfg.run.overwrite else read_manifest(fs, root)
    try:
        name = scheme_named(existing.noise_scheme) if existing is not None else DEFAULT_NOISE_SCHEME
    except ValueError as e:
        raise JobError(f"{redact_url(cfg.run.output)}: {e}") from None
    return cfg.model_copy(update={"run": cfg.run.model_copy(update={"noise_scheme": name})})


def job_schema(cfg: JobConfig) -> dict[str, Any]:
    """The manifest's schema entry of this job's shards."""
    return shard_schema(cfg.run.format, cfg.run.dtype, stored_shape(cfg.model), cfg.run.labels != "none" or cfg.table_labels,
                        cfg.model.shape if cfg.run.store_latents else None)


def _shard_plan_ok(record: ShardRecord, cfg: JobConfig) -> bool:
    if record.index >= num_shards(cfg.run.num_samples, cfg.run.shard_size):
        return False
    shard = shard_for(record.index, cfg.run.num_samples, cfg.run.shard_size)
    return (record.start, record.stop) == (shard.start, shard.stop) and record.path == shard_name(record.index, cfg.run.format)


# Fields that joined a job's identity after outputs were first written with fingerprints (by section of the model
# identity; runtime keys): an output whose manifest lacks one resumes under the fingerprint it was written with.
NEWER_IDENTITY = {"model": ("config_sha256",), "guide": ("config_sha256",),
                  "decoder": ("factory", "kwargs", "config_sha256")}
NEWER_RUNTIME = ("cpu",)


def previous_manifest(fs: Any, root: str, cfg: JobConfig) -> Manifest | None:
    """The manifest a resume of the output at `root` builds on: None with run.overwrite, for a fresh output, or
    when it cannot be read (check_output names that)."""
    try:
        return None if cfg.run.overwrite else read_manifest(fs, root)
    except ManifestError:
        return None


def as_recorded(existing: Manifest | None, cfg: JobConfig, model: dict[str, Any], runtime: dict[str, Any]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model identity, runtime) without the newer fields (above) that the `existing` manifest (previous_manifest)
    does not record, so a job resumes an output written before them with its fingerprint (logged: those are not
    checked for it); a decoder factory or kwargs other than its config records are refused (JobError), as the
    fingerprint cannot."""
    if existing is None or existing.fingerprint is None:
        return model, runtime
    model, runtime, dropped, differ = copy.deepcopy(model), dict(runtime), [], []
    recorded = (existing.config.get("model") or {}).get("decoder") or {}  # its config: the factory and kwargs it ran
    for section, keys in NEWER_IDENTITY.items():
        new = model if section == "model" else model.get(section)
        old = existing.model if section == "model" else existing.model.get(section)
        for key in keys if isinstance(new, dict) and isinstance(old, dict) else ():
            if key in new and key not in old:
                if section == "decoder" and key in ("factory", "kwargs") and recorded.get(key) != new[key]:
                    differ.append(f"model.decoder.{key}: {recorded.get(key)!r} -> {new[key]!r}")
                del new[key]
                dropped.append(f"{section}.{key}")
    if differ:
        raise JobError(f"{redact_url(cfg.run.output)} holds a different job ({'; '.join(differ)}); "
                       "set run.overwrite=true or choose a new run.output")
    for key in NEWER_RUNTIME:
        if key in runtime and key not in existing.runtime:
            del runtime[key]
            dropped.append(f"runtime.{key}")
    if dropped:
        log.warning("%s was written before seedshard recorded %s; a resume of it cannot check those",
                    redact_url(cfg.run.output), ", ".join(dropped))
    return model, runtime


def check_output(fs: Any, root: str, cfg: JobConfig, model: dict[str, Any], sampler_state: dict[str, Any],
                 noise_scheme: str, runtime: dict[str, Any] | None = None) -> tuple[dict[int, ShardRecord], str | None]:
    """(the shards a previous run of this same job committed that still verify, the fingerprint to write);
    ({}, this job's fingerprint) with run.overwrite or a fresh output. Refuses another job's output (JobError
    naming each differing field with its old and new value). An output written before fingerprints resumes
    as such (fingerprint None). Reads only: see `begin_output`."""
    url = redact_url(cfg.run.output)
    refuse_foreign_shards(fs, root, cfg.run.output)
    refuse_nested_output(fs, root, cfg.run.output)
    refuse_data_in_subfolders(fs, root, cfg.run.output)
    fields = fingerprint_fields(cfg, model, sampler_state, noise_scheme, runtime or job_runtime(cfg),
                                job_version(fs, root, cfg.run.overwrite))
    fingerprint = job_fingerprint(fields)
    if cfg.run.overwrite:
        return {}, fingerprint
    existing = read_manifest(fs, root)
    sidecars = load_sidecars(fs, root)
    if existing is None and not sidecars:
        return {}, fingerprint
    if existing is None:
        raise JobError(f"{url} holds shard files but no manifest; choose a new run.output or set run.overwrite=true")
    if existing.fingerprint is None:
        _check_same_legacy_job(url, existing, cfg, model, sampler_state, noise_scheme)
        fingerprint = None
    else:
        _check_same_job(url, existing, cfg, fields)
    if not cfg.run.resume:
        raise JobError(f"{url} already holds this job and run.resume=false; set run.overwrite=true or choose a new run.output")
    schema, metadata = job_schema(cfg), shard_metadata(cfg, sampler_state, noise_scheme, fingerprint)
    done = {}
    for index, record in sidecars.items():
        if not _shard_plan_ok(record, cfg):
            problems = ["not in this job's plan"]
        elif record.fingerprint != fingerprint:
            problems = [f"{record.path}: fingerprint {str(record.fingerprint)[:12]} in its sidecar, this job's is {str(fingerprint)[:12]}"]
        else:
            problems = verify_shard(fs, root, record, schema=schema, metadata=metadata)
        if problems:
            log.warning("regenerating shard %d: %s", index, "; ".join(problems))
        else:
            done[index] = record
    return done, fingerprint


def _check_same_job(url: str, existing: Manifest, cfg: JobConfig, fields: dict[str, Any]) -> None:
    """JobError naming each field that changes bytes ('run.seed: 0 -> 1'), and a lower run.num_samples;
    a higher one grows the job."""
    try:
        old = JobConfig.model_validate(existing.config)
        diff = fingerprint_diff(fingerprint_fields(old, existing.model, existing.sampler_state, existing.noise_scheme,
                                                   existing.runtime, existing.format_version), fields)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise JobError(f"{url}: its manifest cannot be read as a job ({str(e).splitlines()[0]}); "
                       "set run.overwrite=true or choose a new run.output") from None
    if job_fingerprint(fields) != existing.fingerprint and not diff:
        diff.append(f"fingerprint: {existing.fingerprint[:12]} -> {job_fingerprint(fields)[:12]}")
    if cfg.run.num_samples < existing.num_samples:
        diff.append(f"run.num_samples: {existing.num_samples} -> {cfg.run.num_samples} (an output grows, never shrinks)")
    if diff:
        raise JobError(f"{url} holds a different job ({'; '.join(diff)}); set run.overwrite=true or choose a new run.output")


def _check_same_legacy_job(url: str, existing: Manifest, cfg: JobConfig, model: dict[str, Any],
                           sampler_state: dict[str, Any], noise_scheme: str) -> None:
    """The check of outputs written before fingerprints: resolved configs, weights, sampler state, noise scheme."""
    diff = config_diff(existing.config, manifest_config(cfg))
    for part in ("model", "guide"):
        old, new = (m.get("guide", {}) if part == "guide" else m for m in (existing.model, model))
        if old.get("sha256") != new.get("checkpoint_sha256" if new.get("checkpoint") else "sha256"):
            diff.append(f"{part} weights (sha256)")
    for part in ("conditioning", "decoder"):
        if existing.model.get(part) != model.get(part):
            diff.append(f"{part} (sha256)")
    if not any(d.startswith("sampler.") for d in diff):  # same sampler config, yet another state: another version
        diff += [f"sampler_state.{k}" for k in sorted(set(existing.sampler_state) | set(sampler_state))
                 if existing.sampler_state.get(k) != sampler_state.get(k)]
    if existing.noise_scheme != noise_scheme:
        diff.append(f"noise_scheme ({existing.noise_scheme!r} there, {noise_scheme!r} here)")
    if diff:
        raise JobError(f"{url} holds a different job ({', '.join(diff)} differ); set run.overwrite=true or choose a new run.output")


def begin_output(cfg: JobConfig, manifest: Manifest) -> Manifest:
    """Called once every check passed and the workers are up: create the output, remove temp files of
    crashed writers (and, with run.overwrite, every file the previous seedshard run wrote: `owned`),
    and write the `running` manifest. Returns what was written."""
    fs, root = open_output(cfg.run.output, cfg.run.storage_options)
    if cfg.run.overwrite:
        remove_owned(fs, root)
    cleanup_temp(fs, root)
    return write_manifest(fs, root, manifest)
