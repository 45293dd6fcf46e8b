"""Compiled block reduction for :mod:`runner.stats` (numba, the ``fast`` extra).

The NumPy reduction of a block makes about a dozen passes over it (a float64 copy, sum, min,
max, centred squares, bin indices, pairing, bincount). Here one loop gives the sum and the
extrema, and one the centred squares and the histogram, reading the block in its own dtype:
about 4x faster. Sums are kept in per-lane partial sums (LLVM vectorises a reduction only if it
may reorder it), so they differ from NumPy's pairwise sums by rounding, and are deterministic
for a given machine; extrema and histogram counts are exactly the NumPy reduction's (the bin
index is the same float64 expression).
"""

from __future__ import annotations

import numpy as np

from layers.compiled import _add_reassoc, _maximum, _minimum, cached_njit

_jit = cached_njit(nogil=True, error_model="numpy", boundscheck=False)
_CHUNK = 4096   # bin indices of this many values at a time, in an L1-resident buffer


@_jit
def sum_min_max(flat):
    """(sum, min, max) of a contiguous 1-D float32/float64 array, in float64;
    the sum is not finite, and min/max are NaN, where a value is."""
    total = 0.0
    low = np.inf
    high = -np.inf
    for k in range(flat.size):
        v = np.float64(flat[k])
        total = _add_reassoc(total, v)
        low = _minimum(low, v)
        high = _maximum(high, v)
    return total, low, high


@_jit
def centred_and_hist(flat, mean, lo, scale, bins, sat_lo, sat_hi):
    """(m2, counts, saturated, zeros) of finite, contiguous ``flat``: the sum
    of (v - mean)**2, the histogram (bin ``(v - lo) * scale`` clipped to
    [0, bins - 1] and truncated, as ``LayerStats._centred_and_hist``), and
    the numbers of values <= sat_lo or >= sat_hi, and of zeros.

    The indices of a chunk are computed in one vectorised loop and counted in
    a scalar one, into four tables by position: consecutive increments of one
    bin would otherwise wait on each other's stores.
    """
    m2 = 0.0
    saturated = 0
    zeros = 0
    for k in range(flat.size):
        v = np.float64(flat[k])
        m2 = _add_reassoc(m2, (v - mean) * (v - mean))
        saturated += (v <= sat_lo) | (v >= sat_hi)
        zeros += v == 0.0
    counts = np.zeros((4, bins), dtype=np.int64)
    index = np.empty(_CHUNK, dtype=np.int32)
    top = bins - 1.0
    for start in range(0, flat.size, _CHUNK):
        part = flat[start:start + _CHUNK]
        for k in range(part.size):
            t = (np.float64(part[k]) - lo) * scale
            t = t if t > 0.0 else 0.0
            index[k] = np.int32(t if t < top else top)
        for k in range(part.size):
            counts[k & 3, index[k]] += 1
    return m2, counts.sum(axis=0), saturated, zeros
