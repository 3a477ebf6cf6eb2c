"""Small job configs for pipeline tests: the exact Gaussian model, so jobs are fast and checkable."""

from __future__ import annotations

from typing import Any

from pipeline.config import validate_config


def gaussian_job(output: str, **sections: dict[str, Any]) -> Any:
    """A JobConfig sampling the exact edm field of N(0.5, 0.8^2) data with Heun; `sections` update the defaults."""
    data = {
        "run": {"num_samples": 70, "seed": 1, "shard_size": 20, "batch_size": 8, "output": output, "progress": "none"},
        "model": {"factory": "pipeline.models.gaussian:build_gaussian", "kwargs": {"interface": "edm"},
                  "interface": "edm", "shape": [3, 4]},
        "sampler": {"name": "heun", "steps": 8, "time_dist": "karras"},
        "cluster": {"num_workers": 2},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return validate_config(data)


def build_only_on_driver(**kwargs: Any) -> Any:
    """A factory that fails inside a Ray actor (to test a worker that cannot start)."""
    import ray

    if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
        raise RuntimeError("this model cannot be built on a worker")
    from pipeline.models.gaussian import build_gaussian

    return build_gaussian(**kwargs)
