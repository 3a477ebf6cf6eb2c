"""The one line a finished run prints: shards kept / regenerated / new, samples/s and wall time."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..config import JobConfig
from ..output.fs import list_names
from ..output.layout import output_version, side_root
from ..output.manifest import Manifest
from .driver import execute, finalize, prepare


@dataclass(frozen=True)
class RunSummary:
    """What one run did to its output: shards kept from a previous run, regenerated (a previous file was
    missing its check or replaced), new; the samples it generated and the seconds it took."""

    kept: int
    regenerated: int
    new: int
    samples: int
    sampling_s: float
    wall_s: float

    def line(self) -> str:
        rate = f"{self.samples / self.sampling_s:.1f} samples/s" if self.samples and self.sampling_s > 0 else "no sampling"
        return (f"seedshard: shards {self.kept} kept, {self.regenerated} regenerated, {self.new} new; "
                f"{self.samples} samples generated, {rate}; wall time {self.wall_s:.1f} s")


def _shard_files(fs: object, root: str) -> set[int]:
    """Indices of the shards with any file (data or sidecar, in the output's layout): what a previous run left."""
    names = set(list_names(fs, root, "shard-*")) | set(list_names(fs, side_root(root, output_version(fs, root)), "shard-*"))
    return {int(num) for name in names if (num := name[len("shard-"):].split(".")[0]).isdigit()}


def run_job_with_summary(cfg: JobConfig, *, progress: str | None = None) -> tuple[Manifest, RunSummary]:
    """`run_job` that also says what it did to the output (see `RunSummary`)."""
    t0 = time.monotonic()
    plan = prepare(cfg)
    before = _shard_files(plan.fs, plan.root) if plan.todo else set()
    results = execute(plan, progress)
    manifest = finalize(plan, results)
    regenerated = sum(s.index in before for s in plan.todo)
    summary = RunSummary(kept=len(plan.done), regenerated=regenerated, new=len(plan.todo) - regenerated,
                         samples=sum(s.stop - s.start for s in plan.todo), sampling_s=results.seconds,
                         wall_s=time.monotonic() - t0)
    return manifest, summary
