"""What an existing output allows: resume the same job, refuse another, or start afresh.

`check_output` only reads: it returns the shards a previous run of this same job committed that
still verify, and refuses another job's output (JobError naming what differs: config fields via
`config_diff`, model weights, sampler state, noise scheme). `begin_output` is the first write, called
once every check passed and the workers are up.
"""

from __future__ import annotations

import logging
from typing import Any

from ..config import JobConfig, config_diff
from ..output.fs import cleanup_temp, open_output
from ..output.manifest import Manifest, read_manifest, write_manifest
from ..output.shards import ShardRecord, load_sidecars, shard_metadata, shard_name, shard_schema, verify_shard
from ..redact import redact_options, redact_url
from .errors import JobError
from .owned import refuse_foreign_shards, remove_owned
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
    return config


def job_schema(cfg: JobConfig) -> dict[str, Any]:
    """The manifest's schema entry of this job's shards."""
    return shard_schema(cfg.run.format, cfg.run.dtype, cfg.model.shape, cfg.run.labels != "none")


def _shard_plan_ok(record: ShardRecord, cfg: JobConfig) -> bool:
    if record.index >= num_shards(cfg.run.num_samples, cfg.run.shard_size):
        return False
    shard = shard_for(record.index, cfg.run.num_samples, cfg.run.shard_size)
    return (record.start, record.stop) == (shard.start, shard.stop) and record.path == shard_name(record.index, cfg.run.format)


def check_output(fs: Any, root: str, cfg: JobConfig, model: dict[str, Any], sampler_state: dict[str, Any],
                 noise_scheme: str) -> dict[int, ShardRecord]:
    """The shards a previous run of this same job committed that still verify ({} with run.overwrite);
    refuses another job's output (JobError naming what differs). Reads only: see `begin_output`."""
    url = redact_url(cfg.run.output)
    refuse_foreign_shards(fs, root, cfg.run.output)
    if cfg.run.overwrite:
        return {}
    existing = read_manifest(fs, root)
    sidecars = load_sidecars(fs, root)
    if existing is None and not sidecars:
        return {}
    if existing is None:
        raise JobError(f"{url} holds shard files but no manifest; choose a new run.output or set run.overwrite=true")
    diff = config_diff(existing.config, manifest_config(cfg))
    for part in ("model", "guide"):
        old, new = (m.get("guide", {}) if part == "guide" else m for m in (existing.model, model))
        if old.get("sha256") != new.get("sha256"):
            diff.append(f"{part} weights (sha256)")
    if not any(d.startswith("sampler.") for d in diff):  # same sampler config, yet another state: another version
        diff += [f"sampler_state.{k}" for k in sorted(set(existing.sampler_state) | set(sampler_state))
                 if existing.sampler_state.get(k) != sampler_state.get(k)]
    if existing.noise_scheme != noise_scheme:
        diff.append(f"noise_scheme ({existing.noise_scheme!r} there, {noise_scheme!r} here)")
    if diff:
        raise JobError(f"{url} holds a different job ({', '.join(diff)} differ); set run.overwrite=true or choose a new run.output")
    if not cfg.run.resume:
        raise JobError(f"{url} already holds this job and run.resume=false; set run.overwrite=true or choose a new run.output")
    schema, metadata = job_schema(cfg), shard_metadata(cfg, sampler_state, noise_scheme)
    done = {}
    for index, record in sidecars.items():
        problems = (verify_shard(fs, root, record, schema=schema, metadata=metadata)
                    if _shard_plan_ok(record, cfg) else ["not in this job's plan"])
        if problems:
            log.warning("regenerating shard %d: %s", index, "; ".join(problems))
        else:
            done[index] = record
    return done


def begin_output(cfg: JobConfig, manifest: Manifest) -> Manifest:
    """Called once every check passed and the workers are up: create the output, remove temp files of
    crashed writers (and, with run.overwrite, every file the previous seedshard run wrote: `owned`),
    and write the `running` manifest. Returns what was written."""
    fs, root = open_output(cfg.run.output, cfg.run.storage_options)
    if cfg.run.overwrite:
        remove_owned(fs, root)
    cleanup_temp(fs, root)
    return write_manifest(fs, root, manifest)
