"""seedshard's distributed engine: job config, shard plan, Ray workers, driver, storage, reader.

    from pipeline import load_config, run_job, read_samples
    manifest = run_job(load_config("configs/demo.yaml", ["run.num_samples=100"]))
    x = read_samples("out/demo", indices=[0, 5, 7])

Names are imported on first use (module `__getattr__`), so `import pipeline` and the `seedshard`
command's start-up load neither torch nor ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {  # name -> module (relative to this package) that defines it
    "ConfigError": ".config",
    "JobConfig": ".config",
    "load_config": ".config",
    "JobError": ".run.errors",
    "run_job": ".run.driver",
    "read_dataset": ".output.reader",
    "read_latents": ".output.reader",
    "read_samples": ".output.reader",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .config import ConfigError, JobConfig, load_config
    from .output.reader import read_dataset, read_latents, read_samples
    from .run.driver import run_job
    from .run.errors import JobError


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
