"""Deterministic-noise cost: `torch.randn` vs noise schemes v1 and v2 (`SampleNoise`) per batch, one thread.

v1 draws each sample's noise from its own NumPy Philox4x64 generator on the CPU; v2 draws all rows at once
in NumPy uint64 arrays on the CPU (Philox4x32-7 + a table inverse CDF, samplers/noise/v2.py). Both give a sample's
noise as a function of (seed, index, stream, draw) only. torch.randn draws the whole batch from one
generator and has no such property; it is the floor. v1 is checked against its scheme written out
literally (a new numpy Philox + Generator per sample). Start-noise stream, float32, CPU; median of
interleaved rounds.

    python benchmarks/noise_cost.py [--quick]
"""

from __future__ import annotations

import common
import numpy as np
import torch

from samplers.noise import START_STREAM, SampleNoise, generator

CASES = [(64, (2, 8, 8)), (128, (3, 64, 64))]  # (batch, sample shape): the targets of issue 19
MORE_CASES = [(256, (3, 32, 32)), (1024, (2, 8, 8))]


def per_sample_philox(seed: int, start_index: int, n: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Scheme v1, literally: one new generator per sample (start noise stream)."""
    out = np.empty((n, *shape), dtype=np.float32)
    for row in range(n):
        generator(seed, start_index + row, START_STREAM).standard_normal(shape, dtype=np.float32, out=out[row])
    return torch.from_numpy(out)


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(1)
    cases, rounds = (CASES, 3) if args.quick else (CASES + MORE_CASES, 9)
    rows = []
    for n, shape in cases:
        runs = {
            "torch.randn": lambda: torch.randn(n, *shape),
            "v1": lambda: SampleNoise(0, 0, n, scheme="v1").start(shape, torch.float32),
            "v2": lambda: SampleNoise(0, 0, n, scheme="v2").start(shape, torch.float32),
        }
        assert torch.equal(runs["v1"](), per_sample_philox(0, 0, n, shape)), "v1 bits differ from its scheme"
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                times[name].append(common.best_of(run, 1 if args.quick else 3))
        ms = {name: common.median(ts) * 1e3 for name, ts in times.items()}
        rows.append((n, "x".join(map(str, shape)), f"{ms['torch.randn']:.3f}",
                     f"{ms['v1']:.3f}", f"{ms['v1'] / ms['torch.randn']:.1f}x",
                     f"{ms['v2']:.3f}", f"{ms['v2'] / ms['torch.randn']:.1f}x"))
    print(f"Deterministic noise per batch (float32, CPU, start noise); median of {rounds} interleaved rounds.\n")
    print(common.markdown_table(
        ["batch", "sample shape", "torch.randn ms", "v1 ms", "v1 / randn", "v2 ms", "v2 / randn"], rows))
    print("\n" + common.machine_note())


if __name__ == "__main__":
    main()
