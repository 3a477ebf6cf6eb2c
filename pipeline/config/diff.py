"""Comparing resolved configs on resume: `config_diff` names the fields that differ, skipping
`RESUME_IGNORED` (resources and reporting, never anything that changes the samples)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Fields that may change between a run and its resume: resources, checks and limits, reporting, credentials, metrics
# and where the output lives (a copied or moved output resumes). Everything else (seed, sizes,
# model, sampler, dtypes, labels) must match the manifest.
RESUME_IGNORED: tuple[str, ...] = (
    "cluster",
    "run.output",
    "run.progress",
    "run.overwrite",
    "run.resume",
    "run.take_over_lease",
    "run.noise_scheme",  # "auto" resolves to the manifest's scheme; the scheme itself is in the fingerprint
    "run.storage_options",
    "metrics",
    "model.preflight",
    "model.max_checkpoint_bytes",
    "model.guide.max_checkpoint_bytes",
)


def config_diff(
    a: dict[str, Any], b: dict[str, Any], ignore: Iterable[str] = RESUME_IGNORED
) -> list[str]:
    """Dotted paths whose values differ between two resolved configs, skipping `ignore`
    (a path is ignored when it equals an entry or lies under it)."""
    ignored = tuple(ignore)
    missing = object()
    diffs: list[str] = []

    def skip(path: str) -> bool:
        return any(path == p or path.startswith(p + ".") for p in ignored)

    def walk(x: Any, y: Any, prefix: str) -> None:
        if skip(prefix):
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                walk(x.get(k, missing), y.get(k, missing), f"{prefix}.{k}" if prefix else str(k))
        elif x is missing or y is missing or x != y or isinstance(x, bool) != isinstance(y, bool):
            diffs.append(prefix)

    walk(a, b, "")
    return diffs
