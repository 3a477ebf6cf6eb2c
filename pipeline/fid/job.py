"""FID in jobs: feature statistics computed where the images are, merged on the driver.

A generation job with `metrics.fid` extracts features of every shard's samples on the actor
that made them (image samples as their canonical uint8 image, `output.images.to_uint8`, so the FID is
that of the exported PNG files, as standard tools compute it; other samples as stored, float16 rounding included),
returns their `FeatureStats`, and the driver merges them and compares with the reference
`.npz`. Shards a previous run committed are read back and featurised by Ray tasks, as are
existing sample sets (`seedshard fid --samples`) and reference datasets (`seedshard ref-stats`:
a directory or zip of images, an array file, or a seedshard output): one fan-out, `fan_out_stats`.
"""

from __future__ import annotations

from typing import Any

from ..output.fs import absolute_local
from .sources import chunk_stats, image_chunks
from .stats import FeatureStats

CANCEL_WAIT_S = 30.0  # how long a failed fan-out waits for its cancelled tasks to end


def fan_out_stats(source: str, kind: str, chunks: list[list[Any]], extractor: str, extractor_kwargs: dict[str, Any],
                  storage_options: dict | None = None, num_cpus: float = 1, num_gpus: float = 0) -> FeatureStats:
    """Merged FeatureStats of `chunks` of `source` (see `sources.image_chunks`), one Ray task per chunk
    (Ray must be connected); merged in chunk order, so the result does not depend on task timing."""
    import ray

    task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(chunk_stats)
    # Local paths made absolute here: the tasks may run in another working directory (the raylet's, on a cluster
    # joined through RAY_ADDRESS or cluster.address).
    source, kwargs = absolute_local(source), absolute_weights(extractor_kwargs)
    refs = [task.remote(source, kind, c, extractor, kwargs, storage_options) for c in chunks]
    try:
        results = ray.get(refs)
    except ray.exceptions.RayError:
        # Stop the other tasks and let them end before this process may exit: a task that fails once its driver
        # is gone makes Ray print "Failed to push error to driver" on the driver's stderr.
        for ref in refs:
            ray.cancel(ref)
        ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
        raise
    total = FeatureStats()
    for stats in results:
        total.merge(stats)
    return total


def absolute_weights(extractor_kwargs: dict[str, Any]) -> dict[str, Any]:
    """`extractor_kwargs` with a local `weights` path made absolute in the driver's working directory: the Ray
    workers that build the extractor may run in another (the raylet's, on a joined cluster)."""
    weights = extractor_kwargs.get("weights")
    return extractor_kwargs | {"weights": absolute_local(weights)} if isinstance(weights, str) else extractor_kwargs


def dataset_stats(source: str, extractor: str, extractor_kwargs: dict[str, Any] | None = None,
                  num_workers: int = 2, storage_options: dict | None = None) -> FeatureStats:
    """Merged FeatureStats of a dataset, featurised in parallel by Ray tasks (Ray must be connected)."""
    kind, chunks = image_chunks(source, num_workers)
    return fan_out_stats(source, kind, chunks, extractor, extractor_kwargs or {}, storage_options)
