"""Compiled block reduction for :mod:`runner.stats` (numba, the ``fast`` extra).

The NumPy reduction of a block makes about a dozen passes over it (a float64 copy, sum, min,
max, centred squares, bin indices, pairing, bincount). These two loops read the block twice, in
its own dtype. They keep one accumulator per column, so the inner loop over columns vectorises
without reassociating any sum: results are deterministic, whatever the thread count.

Counts, extrema and histogram bins equal the NumPy reduction's exactly (the bin index is the
same float64 expression); the sums, and so the mean and M2, differ from it by rounding only.
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)


@_jit
def moments_pass(x, sat_lo, sat_hi):
    """Per-column statistics of a (rows, n) block, as the rows of a (6, n)
    float64 array: sum of the finite values, their min and max, the count of
    non-finite values, of exact zeros, and of finite values <= sat_lo or
    >= sat_hi.  (One array: LLVM vectorises stores to it without the runtime
    overlap checks six separate arrays would need.)"""
    rows, n = x.shape
    acc = np.zeros((6, n))
    acc[1, :] = np.inf
    acc[2, :] = -np.inf
    total, low, high, nonfinite, zeros, saturated = acc[0], acc[1], acc[2], acc[3], acc[4], acc[5]
    for i in range(rows):
        for j in range(n):
            v = np.float64(x[i, j])
            finite = v - v == 0.0
            vz = v if finite else 0.0
            total[j] += vz
            low[j] = min(low[j], v if finite else np.inf)
            high[j] = max(high[j], v if finite else -np.inf)
            nonfinite[j] += 0.0 if finite else 1.0
            zeros[j] += 1.0 if v == 0.0 else 0.0
            saturated[j] += 1.0 if ((vz <= sat_lo) | (vz >= sat_hi)) and finite else 0.0
    return acc


@_jit
def centred_and_hist(x, mean, lo, scale, bins):
    """Per-column sums of (v - mean)**2 over the finite values of a block,
    and the histogram counts: bin ``(v - lo) * scale`` clipped to
    [0, bins - 1] and truncated, as ``LayerStats._centred_and_hist``.

    Each row's bin indices are computed in one vectorised loop, then counted
    in a scalar one, into four tables by column: consecutive increments of
    one bin would otherwise wait on each other's stores.
    """
    rows, n = x.shape
    m2 = np.zeros(n)
    stride = bins + 1                    # slot ``bins`` takes the non-finite values
    counts = np.zeros(4 * stride, dtype=np.int64)
    index = np.empty(n, dtype=np.int64)
    top = bins - 1.0
    for i in range(rows):
        for j in range(n):
            v = np.float64(x[i, j])
            finite = v - v == 0.0
            d = v - mean
            m2[j] += d * d if finite else 0.0
            t = min(max((v - lo) * scale, 0.0), top)
            index[j] = (j & 3) * stride + (np.int64(t) if finite else bins)
        for j in range(n):
            counts[index[j]] += 1
    return m2, counts.reshape(4, stride)[:, :bins].sum(axis=0)
