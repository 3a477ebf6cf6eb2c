"""Strict JSON (RFC 8259) for values that may hold non-finite floats: the manifest and a shard's sampler state.

Strict JSON has no infinities or NaN, yet a diffusers scheduler_config in the sampler state holds -inf
(lambda_min_clipped) and a config may hold .inf. Written as null they would read back as another job (fingerprint,
verify and resume would disagree); written as -Infinity, JavaScript, polars and jq cannot read them. So a
non-finite float is written as {"$float": "-Infinity"} and read back as the float; files written before held the bare
-Infinity, which ``loads`` (Python's json) still reads.
"""

from __future__ import annotations

import json
import math
from typing import Any

FLOAT_TAG = "$float"
_NONFINITE = ("Infinity", "-Infinity", "NaN")


def tag_nonfinite(value: Any) -> Any:
    """``value`` (plain JSON types) with every non-finite float replaced by ``{"$float": "-Infinity"}`` and the like."""
    if isinstance(value, float) and not math.isfinite(value):
        return {FLOAT_TAG: "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"}
    if isinstance(value, dict):
        return {k: tag_nonfinite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tag_nonfinite(v) for v in value]
    return value


def untag_nonfinite(value: Any) -> Any:
    """Inverse of ``tag_nonfinite``."""
    if isinstance(value, dict):
        if value.keys() == {FLOAT_TAG} and value[FLOAT_TAG] in _NONFINITE:
            return float(value[FLOAT_TAG])
        return {k: untag_nonfinite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [untag_nonfinite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``value`` as strict JSON, non-finite floats tagged; kwargs as for json.dumps."""
    return json.dumps(tag_nonfinite(value), allow_nan=False, **kwargs)


def loads(text: str | bytes) -> Any:
    """Inverse of ``dumps``; also reads the bare -Infinity / NaN literals older files hold. ValueError if not JSON."""
    return untag_nonfinite(json.loads(text))
