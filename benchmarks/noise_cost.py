"""Deterministic-noise cost: `SampleNoise` (numpy Philox per sample) vs plain `torch.randn` per batch.

SampleNoise draws each sample's noise from its own counter-based generator (samplers/noise.py), so
a sample's noise depends only on (seed, index, stream, draw). torch.randn draws the whole batch from
one generator and has no such property; it is the floor. "per-sample Philox objects" is the scheme
written out literally (a new numpy Philox + Generator per sample, as samplers/noise.py did before it
re-keyed one Philox object); it is checked to give the same bits as SampleNoise. One thread for
torch, as numpy's generators are single-threaded. Median of interleaved rounds.

    python benchmarks/noise_cost.py [--quick]
"""

from __future__ import annotations

import common
import numpy as np
import torch

from samplers.noise import START_STREAM, SampleNoise, generator

SHAPES = [(2, 8, 8), (3, 32, 32), (4, 64, 64)]


def per_sample_philox(seed: int, start_index: int, n: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The documented scheme, literally: one new generator per sample (start noise stream)."""
    out = np.empty((n, *shape), dtype=np.float32)
    for row in range(n):
        generator(seed, start_index + row, START_STREAM).standard_normal(shape, dtype=np.float32, out=out[row])
    return torch.from_numpy(out)


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(1)
    batches, rounds = ([64, 256], 3) if args.quick else ([64, 256, 1024], 9)
    rows = []
    for shape in SHAPES:
        for n in batches:
            runs = {
                "torch.randn": lambda: torch.randn(n, *shape),
                "SampleNoise": lambda: SampleNoise(0, 0, n).start(shape, torch.float32),
                "per-sample Philox objects": lambda: per_sample_philox(0, 0, n, shape),
            }
            assert torch.equal(runs["SampleNoise"](), runs["per-sample Philox objects"]()), "bits differ"
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(rounds):
                for name, run in runs.items():
                    times[name].append(common.best_of(run, 1))
            ms = {name: common.median(ts) * 1e3 for name, ts in times.items()}
            rows.append((n, "x".join(map(str, shape)), f"{ms['torch.randn']:.3f}", f"{ms['SampleNoise']:.3f}",
                         f"{ms['SampleNoise'] / ms['torch.randn']:.1f}x", f"{ms['per-sample Philox objects']:.3f}",
                         f"{ms['per-sample Philox objects'] / ms['torch.randn']:.1f}x"))
    print(f"Deterministic noise per batch (float32, CPU); median of {rounds} interleaved rounds.\n")
    print(common.markdown_table(
        ["batch", "sample shape", "torch.randn ms", "SampleNoise ms", "SampleNoise / randn",
         "per-sample Philox objects ms", "per-sample Philox / randn"], rows))
    print("\n" + common.machine_note())


if __name__ == "__main__":
    main()
