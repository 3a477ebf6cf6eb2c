"""Noise scheme v2 on the CPU as one compiled loop (numba): the same bits as v2.py's NumPy and torch paths.

v2.py states the scheme. NumPy needs ~20 array passes per Philox block and a Python call per piece;
this loop makes a row's words in registers and turns them into normals in two cache-resident passes,
so it runs at about a third to four fifths of `torch.randn`'s time for the same shape on one thread.
It releases the GIL, so a background producer (producer.py) overlaps it with the network.
Only operations with one exact IEEE/integer result are used (wrapping 64-bit integer products,
int32 -> float32 conversion, a float32 multiply and add kept apart: numba never contracts them to an FMA
without fastmath), so the bits do not depend on the CPU's vector width.

Loading the loop costs a process ~0.5 s (importing numba, loading its on-disk cache; 0.7 s to compile the
first time), so a process loads it only once it pays back (`wanted`): at its first draw of `LOAD_AT_VALUES`
values or more, or after `LOAD_AFTER_DRAWS` smaller ones; until then draws take the NumPy path. A short job
on small samples never pays the load; a long one loads it within its first batches.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

import numpy as np

from .v2 import M0, M1, MASK32, ROUNDS, S, W0, W1

AVAILABLE = importlib.util.find_spec("numba") is not None  # a core dependency; without it: the NumPy path
LOAD_AT_VALUES = 1 << 16  # ~0.6 ms of NumPy per such draw: the load pays back within a few hundred
LOAD_AFTER_DRAWS = 256  # small draws (~0.1 ms of NumPy each at 64 x 2x8x8) before loading anyway
_small_draws = 0


def _fill(k0, k1, start, n, sd, blocks, out, table_a, table_b):  # pragma: no cover - runs compiled
    """Normals of draw `sd` (stream + 2**20 draw) for indices start .. start + n - 1 into out (n, 4 blocks)."""
    m, sh = np.uint64(MASK32), np.uint64(32)
    m0, m1, w0, w1 = np.uint64(M0), np.uint64(M1), np.uint64(W0), np.uint64(W1)
    words = np.empty(4 * blocks, np.int32)
    f = np.empty(4 * blocks, np.float32)
    bits = f.view(np.uint32)
    low, shift = np.uint32((1 << S) - 1), np.uint32(S)
    for r in range(n):
        index = np.uint64(start) + np.uint64(r)
        for b in range(blocks):  # Philox4x32-ROUNDS of counter [sd, b, index lo, index hi] under key [k0, k1]
            c0, c1, c2, c3 = np.uint64(sd), np.uint64(b), index & m, index >> sh
            a0, a1 = k0, k1
            for _ in range(ROUNDS):
                p0, p1 = c0 * m0, c2 * m1
                c0, c1, c2, c3 = ((p1 >> sh) ^ c1 ^ a0) & m, p1 & m, ((p0 >> sh) ^ c3 ^ a1) & m, p0 & m
                a0, a1 = (a0 + w0) & m, (a1 + w1) & m
            words[4 * b] = np.int32(np.uint32(c0 | np.uint64(1)))  # w | 1 as int32: odd, symmetric
            words[4 * b + 1] = np.int32(np.uint32(c1 | np.uint64(1)))
            words[4 * b + 2] = np.int32(np.uint32(c2 | np.uint64(1)))
            words[4 * b + 3] = np.int32(np.uint32(c3 | np.uint64(1)))
        for p in range(4 * blocks):
            f[p] = np.float32(words[p])  # round to nearest
        for p in range(4 * blocks):  # z = A[cell] + B[cell] * T, the secant of -Phi^-1 over the cell
            cell = bits[p] >> shift
            out[r, p] = table_a[cell] + table_b[cell] * np.float32(bits[p] & low)


@functools.cache
def compiled() -> Callable[..., None]:
    """The compiled `_fill` (imports numba; compiles, or loads numba's cache of, the loop once per process)."""
    import numba

    return numba.njit(nogil=True, cache=True, boundscheck=False)(_fill)


def wanted(values: int) -> bool:
    """Whether a draw of `values` numbers takes the compiled loop: always once it is loaded; loading it only for a
    large draw or after many small ones (module docstring). The NumPy path gives the same bits."""
    global AVAILABLE, _small_draws
    if not AVAILABLE:
        return False
    if compiled.cache_info().currsize:
        return True
    if values < LOAD_AT_VALUES:
        _small_draws += 1
        if _small_draws <= LOAD_AFTER_DRAWS:
            return False
    try:
        compiled()
    except ImportError:  # numba is installed but cannot load (e.g. a NumPy newer than it supports): NumPy for good
        AVAILABLE = False
        return False
    return True


def normal(seed: int, start_index: int, n: int, sd: int, blocks: int, out: np.ndarray,
           table_a: np.ndarray, table_b: np.ndarray) -> None:
    """v2 normals of draw `sd` for indices start_index .. + n - 1 into `out` (n, 4 blocks) float32."""
    compiled()(np.uint64(seed & MASK32), np.uint64(seed >> 32), start_index, n, sd, blocks, out, table_a, table_b)
