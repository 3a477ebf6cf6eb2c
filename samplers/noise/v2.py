"""Noise scheme v2: Philox4x32-7 bits for all rows of a batch at once, an exact table inverse CDF to normals.

Every value is a pure function of (seed, index, stream, draw, position), so sample i's noise does not
depend on the batch size, layout, device or retries. The scheme, exactly (integers unsigned, words 32-bit):

    bits.  Philox4x32-7 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3", the Random123
           round: M = 0xD2511F53, 0xCD9E8D57, Weyl W = 0x9E3779B9, 0xBB67AE85; 7 rounds, the count their
           Table 2 lists as Crush-resistant, i.e. passing all of TestU01's SmallCrush, Crush and BigCrush
           for many keys; 10 is their default, which adds 3 rounds of margin at 10/7 the cost)
               key     = [seed mod 2**32, seed div 2**32]
               counter = [stream + 2**20 * draw, block, index mod 2**32, index div 2**32]
           gives four words w[0..3]; value number p of a draw (its position in the C-order flattened
           sample shape) is w[p mod 4] of block p div 4.  stream < 2**20, draw < 2**12.
    normal. From one word w: x = w | 1 read as a two's-complement int32 (odd, |x| < 2**31, and x and -x
           equally likely), f = float32(x) rounded to nearest (no ties: x is odd), b = the 32 bits of f,
           cell = b >> 15 (sign, exponent and the top K = 8 fraction bits), T = b & (2**15 - 1); then
               z = A[cell] + B[cell] * float32(T)        (a float32 multiply, then a float32 add; no FMA)
           which is z ~ sign(x) * g(|f|), g(a) = -Phi^-1(a / 2**32) (tail probability a / 2**32 <= 1/2),
           interpolated by the secant of g over the cell: for |f| in [2**e, 2**(e+1)), e in [0, 30], cells
           j in [0, 2**K) with edges r0, r1 = 2**e * (1 + j / 2**K), 2**e * (1 + (j + 1) / 2**K),
               A = +-f32(g(r0)),  B = +-f32(g(r1) - g(r0)) * 2**-15,   + for x > 0, - for x < 0,
           and 0 in every other cell (the one other value of |f|, 2**31, gives z = 0). Phi^-1 is
           `statistics.NormalDist().inv_cdf` in float64 (Wichura's AS241). The table is pinned by its
           sha256 (`TABLE_SHA256`): a platform whose libm would build a different table fails loudly.
           |z - sign(x) g(|f|)| < 1e-6 everywhere; |z| <= 6.24.
    labels. Uniform in [0, n), n < 2**31: stream 1, draw 0, block 0, with R = w[0] * 2**32 + w[1],
           label = floor(R * n / 2**64) (bias at most n / 2**64, i.e. none measurable).
    output. normals are float32, then moved/cast to the caller's device and dtype.

Three implementations give the same bits: a compiled loop on the CPU (v2_kernel.py, numba), NumPy uint64
arrays on the CPU until a process loads that loop, or where numba is missing (exact wraparound; ~5 array ops per Philox round for all four
words, in cache-sized pieces) and torch int64 tensors on other devices (the 32x32 -> 64 multiply wraps
modulo 2**64 and only its two 32-bit halves are used). The transform
uses only operations IEEE 754 rounds exactly: int32 -> float32 conversion, bit extraction, a table
lookup, one float32 multiply and one float32 add as separate operations. So a value is the same bits
on every device, given the same table.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

SCHEME = ("philox4x32-7(key=seed, counter=[stream+2**20*draw, position//4, index]) word position%4; "
          "float32(int32(w|1)) secant table inverse-cdf K=8; labels floor(64 bits * n / 2**64); v2")
MAX_STREAM, MAX_DRAW = 1 << 20, 1 << 12

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
ROUNDS = 7

# Values per piece of work by device type: cache-sized on the CPU, one piece elsewhere (GPUs want big kernels).
CHUNK: dict[str, int] = defaultdict(lambda: 1 << 62, cpu=1 << 16)
K = 8  # cells per octave of |f|: 2**K
S = 23 - K  # float32 fraction bits below the cell: T has S bits
TABLE_SHA256 = "ea2d2d8b9895f7bc0da8a50426ea3652294126175cd20384e578a6b9d7a900b8"


def round_keys(seed: int) -> list[tuple[int, int]]:
    """The (k0, k1) of each round under the key `seed`."""
    k0, k1 = seed & MASK32, seed >> 32
    return [((k0 + r * W0) & MASK32, (k1 + r * W1) & MASK32) for r in range(ROUNDS)]


# -- the table ------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _table_cpu() -> np.ndarray:
    """(2**(9+K), 2) float32 [A, B] by cell = the top 9 + K bits of float32(x) (module docstring)."""
    inv_cdf = statistics.NormalDist().inv_cdf
    edges = 1.0 + np.arange(2**K + 1) / 2**K  # cell edges of one octave, relative
    table = np.zeros((2, 256, 2**K, 2), dtype=np.float32)  # sign, biased exponent, j, [A, B]
    for e in range(31):
        g = np.array([-inv_cdf(float(r) * 2.0**e / 2.0**32) for r in edges])
        table[0, 127 + e, :, 0] = g[:-1].astype(np.float32)
        table[0, 127 + e, :, 1] = (g[1:] - g[:-1]).astype(np.float32) * np.float32(2.0**-S)
    table[1] = -table[0]
    table = table.reshape(-1, 2)
    digest = hashlib.sha256(table.tobytes()).hexdigest()
    if digest != TABLE_SHA256:
        raise RuntimeError(f"noise scheme v2: this platform builds a different normal table (sha256 {digest}, "
                           f"expected {TABLE_SHA256}); its noise would not match other machines'")
    return table


@lru_cache(maxsize=None)
def _table_np() -> tuple[np.ndarray, np.ndarray]:
    """A and B as two contiguous float32 arrays (two gathers beat one gather of pairs in NumPy)."""
    table = _table_cpu()
    return np.ascontiguousarray(table[:, 0]), np.ascontiguousarray(table[:, 1])


@lru_cache(maxsize=None)
def _table(device: torch.device) -> torch.Tensor:
    """The table as (cells,) float64 whose 8 bytes are the float32 pair [A, B] (one gather per value)."""
    return torch.from_numpy(_table_cpu()).view(torch.float64).view(-1).to(device)


# -- torch: any device ------------------------------------------------------------------------------------
def _mix(product: torch.Tensor, word: torch.Tensor, key: int) -> torch.Tensor:
    """(high word of `product`) ^ word ^ key, masked to 32 bits."""
    out = torch.bitwise_xor(product >> 32, word)
    return out.bitwise_xor_(key).bitwise_and_(MASK32)


def philox(counter: Sequence[torch.Tensor], seed: int, rounds: int = ROUNDS) -> list[torch.Tensor]:
    """Philox4x32-`rounds` of `counter` (4 broadcastable int64 tensors of 32-bit words) under the key `seed`.

    Returns the 4 output words, int64 in [0, 2**32), broadcast to one shape."""
    c0, c1, c2, c3 = counter
    k0, k1 = seed & MASK32, seed >> 32
    for _ in range(rounds):
        p0, p1 = c0 * M0, c2 * M1  # the exact products modulo 2**64: hi = p >> 32, lo = p mod 2**32
        # The lo words are kept unmasked: they enter the next round only through `_mix`, whose result is
        # masked before it is multiplied again.
        c0, c1, c2, c3 = _mix(p1, c1, k0), p1, _mix(p0, c3, k1), p0
        k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
    shape = torch.broadcast_shapes(c0.shape, c1.shape, c2.shape, c3.shape)
    return [w.bitwise_and(MASK32).expand(shape) for w in (c0, c1, c2, c3)]


def words(seed: int, index: torch.Tensor, stream: int, draw: int, blocks: torch.Tensor) -> torch.Tensor:
    """The words of `blocks` (b,) of draw (stream, draw) for sample indices `index` (n,): (n, 4 b) int64."""
    index = index.unsqueeze(1)
    counter = [torch.full((1, 1), stream + MAX_STREAM * draw, dtype=torch.int64, device=index.device),
               blocks.unsqueeze(0), index & MASK32, index >> 32]
    return torch.stack(philox(counter, seed), dim=-1).view(len(index), 4 * len(blocks))


def normal_from_words(w: torch.Tensor) -> torch.Tensor:
    """Standard normals, float32, from 32-bit words w (int64 in [0, 2**32)), elementwise (module docstring)."""
    x = w | 1
    x = x - ((x >> 31) << 32)  # the int32 two's-complement value, exact in int64
    b = x.to(torch.float32).view(torch.int32).to(torch.int64) & MASK32
    t = (b & ((1 << S) - 1)).to(torch.float32)
    ab = torch.index_select(_table(w.device), 0, (b >> S).view(-1)).view(torch.float32).view(*w.shape, 2)
    return ab[..., 1].mul(t).add_(ab[..., 0])


def _normal_torch(seed: int, start_index: int, n: int, stream: int, draw: int, blocks: int,
                  out: torch.Tensor) -> None:
    device = out.device
    index = torch.arange(start_index, start_index + n, dtype=torch.int64, device=device)  # exact: < 2**63
    block = torch.arange(blocks, dtype=torch.int64, device=device)
    cols = max(1, min(blocks, CHUNK[device.type] // 4))
    rows = max(1, CHUNK[device.type] // (4 * cols))
    for r in range(0, n, rows):
        for c in range(0, blocks, cols):
            w = words(seed, index[r:r + rows], stream, draw, block[c:c + cols])
            out[r:r + rows, 4 * c:4 * c + w.shape[1]] = normal_from_words(w)


# -- NumPy: the CPU ----------------------------------------------------------------------------------------
_U32 = np.uint64(32)
_M = np.array([[M0], [M1]], dtype=np.uint64)


def philox_np(seed: int, index: np.ndarray, sd: int, block: np.ndarray) -> list[np.ndarray]:
    """Philox4x32-7 words of counters [sd, block, index] for `index` (rows,) x `block` (cols,) uint64 arrays:
    4 uint64 arrays (rows, cols) of 32-bit words; the same bits as `philox`."""
    rows, cols = len(index), len(block)
    (k0, k1), (l0, l1), *keys = round_keys(seed)
    # Rounds 1 and 2 on what is still constant per row or per column (c0 = sd is one number, c2, c3 per row).
    p0 = M0 * sd
    p1 = (index & np.uint64(MASK32)) * np.uint64(M1)
    c0 = ((p1 >> _U32) ^ np.uint64(k0))[:, None] ^ block[None, :]  # (rows, cols)
    c1 = (p1 & np.uint64(MASK32))[:, None]
    c2 = (index >> _U32) ^ np.uint64(((p0 >> 32) ^ k1) & MASK32)
    c3 = p0 & MASK32
    X = np.empty((2, rows, cols), np.uint64)  # [c0, c2]
    L = np.empty((2, rows, cols), np.uint64)  # [c1, c3]
    P = np.empty((2, rows, cols), np.uint64)
    q = c2 * np.uint64(M1)
    X[0] = ((q >> _U32) ^ np.uint64(l0))[:, None] ^ c1
    L[0] = (q & np.uint64(MASK32))[:, None]
    np.multiply(c0, np.uint64(M0), out=P[0])
    np.right_shift(P[0], _U32, out=X[1])
    np.bitwise_xor(X[1], np.uint64(c3 ^ l1), out=X[1])
    np.bitwise_and(P[0], np.uint64(MASK32), out=L[1])
    # The other rounds: [c0, c2] * [M0, M1] in one multiply; the crossed halves go to the other pair.
    X, L, P = X.reshape(2, -1), L.reshape(2, -1), P.reshape(2, -1)
    crossed = P[::-1]
    for k in keys:
        np.multiply(X, _M, out=P)
        np.right_shift(crossed, _U32, out=X)
        np.bitwise_xor(X, L, out=X)
        np.bitwise_xor(X, np.array(k, dtype=np.uint64)[:, None], out=X)
        np.bitwise_and(crossed, np.uint64(MASK32), out=L)
    return [a.reshape(rows, cols) for a in (X[0], L[0], X[1], L[1])]


def _normal_np_piece(seed: int, index: np.ndarray, sd: int, block: np.ndarray, out: np.ndarray) -> None:
    """Normals of `index` x `block` into `out` (rows, 4 cols) float32, C-contiguous."""
    rows, cols = len(index), len(block)
    x = np.empty((rows, cols, 4), np.uint32)
    for j, word in enumerate(philox_np(seed, index, sd, block)):
        np.bitwise_or(word, np.uint64(1), out=x[:, :, j], casting="unsafe")  # exact: word < 2**32
    x = x.reshape(-1)
    f = x.view(np.int32).astype(np.float32)  # round to nearest
    b = f.view(np.uint32)
    cell = np.right_shift(b, np.uint32(S), out=np.empty(len(x), np.intp), casting="unsafe")  # take wants intp
    t = np.bitwise_and(b, np.uint32((1 << S) - 1)).astype(np.float32)  # exact: < 2**15
    table_a, table_b = _table_np()
    z = out.reshape(-1)
    np.take(table_b, cell, out=f, mode="wrap")  # f is done with; cell is in range, so "wrap" never wraps
    np.multiply(f, t, out=z)
    np.take(table_a, cell, out=f, mode="wrap")
    np.add(z, f, out=z)


def _normal_np(seed: int, start_index: int, n: int, stream: int, draw: int, blocks: int, out: np.ndarray) -> None:
    index = np.arange(start_index, start_index + n, dtype=np.uint64)
    block = np.arange(blocks, dtype=np.uint64)
    cols = max(1, min(blocks, CHUNK["cpu"] // 4))
    rows = max(1, CHUNK["cpu"] // (4 * cols))
    for r in range(0, n, rows):
        for c in range(0, blocks, cols):
            piece = out[r:r + rows, 4 * c:4 * (c + cols)]
            target = piece if piece.flags.c_contiguous else np.empty(piece.shape, np.float32)
            _normal_np_piece(seed, index[r:r + rows], stream + MAX_STREAM * draw, block[c:c + cols], target)
            if target is not piece:
                piece[...] = target


def normal(seed: int, start_index: int, n: int, stream: int, draw: int, shape: Sequence[int],
           device: torch.device) -> torch.Tensor:
    """Standard normal draw (stream, draw) for indices start_index .. +n-1: (n, *shape) float32 on device."""
    count = math.prod(shape)
    blocks = -(-count // 4)
    if device.type == "cpu":
        from . import v2_kernel  # it imports this module's constants

        out = np.empty((n, 4 * blocks), dtype=np.float32)
        if v2_kernel.wanted(n * count):
            v2_kernel.normal(seed, start_index, n, stream + MAX_STREAM * draw, blocks, out, *_table_np())
        else:
            _normal_np(seed, start_index, n, stream, draw, blocks, out)
        return torch.from_numpy((out if count % 4 == 0 else np.ascontiguousarray(out[:, :count])).reshape(n, *shape))
    out_t = torch.empty(n, 4 * blocks, dtype=torch.float32, device=device)
    _normal_torch(seed, start_index, n, stream, draw, blocks, out_t)
    return out_t[:, :count].reshape(n, *shape)


def labels(seed: int, start_index: int, n: int, stream: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """Uniform labels in [0, num_classes) from draw 0 of `stream`: (n,) int64 on device."""
    index = torch.arange(start_index, start_index + n, dtype=torch.int64, device=device)
    w = words(seed, index, stream, 0, torch.zeros(1, dtype=torch.int64, device=device))
    hi, lo = w[:, 0], w[:, 1]
    return (hi * num_classes + ((lo * num_classes) >> 32)) >> 32
