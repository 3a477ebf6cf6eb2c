"""Deterministic-noise cost: `torch.randn` vs noise schemes v1 and v2 (`SampleNoise`) per batch, one thread.

v1 draws each sample's noise from its own NumPy Philox4x64 generator on the CPU; v2 draws all rows at once
(Philox4x32-7 + a table inverse CDF, samplers/noise/v2.py) in its compiled CPU loop (numba, v2_kernel.py), and,
in the last column, in its NumPy fallback for platforms without numba (the same bits). Both give a sample's
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

from samplers.noise import START_STREAM, SampleNoise, generator, v2, v2_kernel

TARGET = 1.5  # issue 19: v2 start noise <= 1.5x torch.randn at CASES

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
    v2_kernel.compiled()  # loaded, as in any process past its first large draw or 256 small ones (v2_kernel.py)
    cases, rounds = (CASES, 3) if args.quick else (CASES + MORE_CASES, 9)
    rows, misses = [], []
    for n, shape in cases:
        runs = {
            "torch.randn": lambda: torch.randn(n, *shape),
            "v1": lambda: SampleNoise(0, 0, n, scheme="v1").start(shape, torch.float32),
            "v2": lambda: SampleNoise(0, 0, n, scheme="v2").start(shape, torch.float32),
            "v2 NumPy": lambda: numpy_v2(n, shape),
        }
        assert torch.equal(runs["v2"](), runs["v2 NumPy"]()), "v2's compiled and NumPy paths differ"
        assert torch.equal(runs["v1"](), per_sample_philox(0, 0, n, shape)), "v1 bits differ from its scheme"
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                times[name].append(common.best_of(run, 1 if args.quick else 3))
        ms = {name: common.median(ts) * 1e3 for name, ts in times.items()}
        rows.append((n, "x".join(map(str, shape)), f"{ms['torch.randn']:.3f}",
                     f"{ms['v1']:.3f}", f"{ms['v1'] / ms['torch.randn']:.1f}x",
                     f"{ms['v2']:.3f}", f"{ms['v2'] / ms['torch.randn']:.2f}x",
                     f"{ms['v2 NumPy']:.3f}", f"{ms['v2 NumPy'] / ms['torch.randn']:.1f}x"))
        if (n, shape) in CASES and ms["v2"] / ms["torch.randn"] > TARGET:
            misses.append(f"{n}x{'x'.join(map(str, shape))}")
    print(f"Deterministic noise per batch (float32, CPU, start noise); median of {rounds} interleaved rounds.\n")
    print(common.markdown_table(
        ["batch", "sample shape", "torch.randn ms", "v1 ms", "v1 / randn", "v2 ms", "v2 / randn", "v2 NumPy ms",
         "v2 NumPy / randn"], rows))
    print(f"\nTarget: v2 <= {TARGET}x torch.randn at " + ", ".join(f"{n}x{'x'.join(map(str, s))}" for n, s in CASES)
          + (": met." if not misses else f": MISSED at {', '.join(misses)}."))
    print(common.machine_note())


def numpy_v2(n: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Scheme v2's start noise by its NumPy path (what runs where numba is missing)."""
    count = int(np.prod(shape))
    out = np.empty((n, 4 * -(-count // 4)), np.float32)
    v2._normal_np(0, 0, n, START_STREAM, 0, out.shape[1] // 4, out)
    return torch.from_numpy(out[:, :count]).reshape(n, *shape)


if __name__ == "__main__":
    main()
