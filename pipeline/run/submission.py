"""Running under `ray job submit`: the entrypoint runs in Ray's copy of `--working-dir`, so a relative
`run.output` would be written there (and deleted with it), not where the user expects."""

from __future__ import annotations

import os

from ..config import ConfigError

# Set by Ray's job supervisor for every `ray job submit` entrypoint (ray/_private/runtime_env/constants.py).
JOB_ENV_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def submitted_job() -> bool:
    """True inside the entrypoint of `ray job submit`."""
    return JOB_ENV_VAR in os.environ


def check_output_location(output: str) -> None:
    """Refuse a relative local run.output under `ray job submit` (ConfigError, exit 2)."""
    if submitted_job() and "://" not in output and not os.path.isabs(os.path.expanduser(output)):
        raise ConfigError(f"run.output: a relative path under `ray job submit` would land in Ray's copy of the working "
                          f"directory; use an absolute path or a URL such as s3://bucket/run (got {output!r})")
