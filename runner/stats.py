"""Mergeable streaming statistics of one layer's activations.

A :class:`LayerStats` accumulator receives the post-activation values of a
layer batch by batch and reports moments, extrema, sparsity, saturation and a
fixed-range histogram. Results are bit-identical whatever the batch sizes fed
to :meth:`LayerStats.update`: rows are regrouped into fixed blocks of
``block_rows`` rows aligned to the start of the stream, every block is reduced
on its own, and block results are combined in row order (Chan et al.'s
parallel update for the moments). Only the grouping into blocks influences
floating-point rounding, and that grouping does not depend on the batches.

Conventions, shared by every statistic:

* Non-finite values (NaN, +inf, -inf) are counted in ``nonfinite`` and are
  excluded from ``mean``, ``std``, ``min``, ``max``, ``frac_saturated`` and the
  histogram. ``count`` is ``rows * n`` and is the denominator of every
  fraction, so ``frac_zero`` and ``frac_saturated`` are fractions of all values.
* A unit is dead when every one of its values is exactly zero (-0.0 counts as
  zero; NaN does not).
* Saturation against ``output_range=(lo, hi)`` is inclusive:
  ``v <= lo + 0.01*(hi - lo)`` or ``v >= hi - 0.01*(hi - lo)``.
* Histogram bins are uniform on ``[lo, hi]``; a value goes to bin
  ``floor((v - lo) * (bins / (hi - lo)))`` computed in float64, clipped to
  ``[0, bins - 1]``. Values below ``lo`` land in the first bin, values at or
  above ``hi`` in the last one. ``edges`` is ``linspace(lo, hi, bins + 1)``;
  near an interior edge the bin follows the index formula above.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["LayerStats"]

BLOCK_ROWS = 4096  # rows per reduction block (the default of LayerStats)
_SATURATION_FRACTION = 0.01
_RANGE_PERCENTILES = (0.5, 99.5)
_RANGE_PADDING = 0.10
# Elements per inner chunk: small enough that the temporaries of one chunk
# stay in a core's L2 cache while the chain of element-wise passes runs.
_CHUNK = 32768
# Pairing two bin indices into one counter needs bins**2 counters; beyond this
# the counter table stops fitting in L1 and pairing no longer pays off.
_PAIR_MAX_BINS = 64


class _Totals:
    """Running totals over the rows reduced so far (excluding the carry).

    The moments are kept per block, ``(finite count, block mean, block M2)``,
    and folded in row order when read. Chan's update is not associative in
    floating point, so keeping the blocks is what lets a merge reproduce the
    single-stream fold exactly.
    """

    __slots__ = ("rows", "moments", "vmin", "vmax", "zeros", "saturated",
                 "nonfinite", "counts", "live")

    def __init__(self, n: int, bins: int) -> None:
        self.rows = 0
        self.moments: list[tuple[int, float, float]] = []
        self.vmin = math.inf
        self.vmax = -math.inf
        self.zeros = 0
        self.saturated = 0
        self.nonfinite = 0
        self.counts = np.zeros(bins, dtype=np.int64)
        # live[j] is True once unit j has shown a value other than exactly 0.
        self.live = np.zeros(n, dtype=bool)

    def copy(self) -> "_Totals":
        other = _Totals.__new__(_Totals)
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, (np.ndarray, list)):
                value = value.copy()
            setattr(other, name, value)
        return other

    def absorb(self, b: "_Totals") -> None:
        """Append the rows summarised by ``b`` after the rows of ``self``."""
        self.rows += b.rows
        self.moments.extend(b.moments)
        self.vmin = min(self.vmin, b.vmin)
        self.vmax = max(self.vmax, b.vmax)
        self.zeros += b.zeros
        self.saturated += b.saturated
        self.nonfinite += b.nonfinite
        self.counts += b.counts
        self.live |= b.live

    def fold_moments(self) -> tuple[int, float, float]:
        """Combine the block moments in row order (Chan et al.).

        mean = mean_a + d * n_b / n; M2 = M2_a + M2_b + d**2 * n_a * n_b / n, with d = mean_b - mean_a.
        """
        count, mean, m2 = 0, 0.0, 0.0
        for n_b, mean_b, m2_b in self.moments:
            if not count:
                count, mean, m2 = n_b, mean_b, m2_b
                continue
            total = count + n_b
            delta = mean_b - mean
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + delta * delta * (count * n_b / total)
            count = total
        return count, mean, m2


def _check_range(value, what: str) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a pair of numbers (lo, hi), got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{what} must satisfy lo < hi with finite bounds, got {value!r}")
    return lo, hi


def _check_positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    return int(value)


def _percentiles(flat: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Percentiles with linear interpolation (NumPy's default method) through np.partition.

    np.percentile would import numpy.ma on first use, a cost paid at every run's start.
    """
    positions = [(flat.size - 1) * q / 100.0 for q in qs]
    lows = [int(np.floor(p)) for p in positions]
    kth = sorted({k for lo in lows for k in (lo, min(lo + 1, flat.size - 1))})
    part = np.partition(flat, kth)
    out = []
    for p, lo in zip(positions, lows):
        a, b = float(part[lo]), float(part[min(lo + 1, flat.size - 1)])
        out.append(a + (p - lo) * (b - a))
    return out


def robust_range(x: np.ndarray) -> tuple[float, float]:
    """Histogram range from one block: the 0.5-99.5 percentile span of finite values, padded by 10% per side."""
    flat = x.reshape(-1)
    finite = np.isfinite(flat)
    if not finite.all():
        flat = flat[finite]
    if flat.size == 0:
        return -1.0, 1.0
    p_lo, p_hi = _percentiles(flat, _RANGE_PERCENTILES)
    span = p_hi - p_lo
    if span > 0 and math.isfinite(span):
        lo, hi = p_lo - _RANGE_PADDING * span, p_hi + _RANGE_PADDING * span
    else:
        # Constant block (or a span too wide to represent): open a window
        # around the value whose width scales with its magnitude.
        centre = p_lo if span == 0 else 0.5 * p_lo + 0.5 * p_hi
        half = max(abs(centre) * _RANGE_PADDING, 1e-3)
        lo, hi = centre - half, centre + half
    big = float(np.finfo(np.float64).max)
    lo, hi = max(lo, -big), min(hi, big)
    if not lo < hi:
        lo, hi = float(np.nextafter(lo, -math.inf)), float(np.nextafter(hi, math.inf))
    return lo, hi


class LayerStats:
    """Streaming, mergeable statistics of one layer's activations.

    Args:
        n: Number of units (columns of every batch).
        bins: Number of histogram bins.
        hist_range: Fixed histogram range ``(lo, hi)``; takes precedence.
        output_range: Bounds of a bounded activation (e.g. ``(0, 1)`` for
            sigmoid). Enables ``frac_saturated`` and is the histogram range
            when ``hist_range`` is not given.
        block_rows: Rows per reduction block. Results depend on it (through
            rounding) but never on the batch sizes.

    Memory: up to two buffers of ``block_rows x n`` float64 (the partial
    block, and a conversion buffer for non-float64 input).

    With neither range given, the histogram range is fixed from the first
    block (the first ``block_rows`` rows of the stream, or all rows when
    fewer): 0.5th to 99.5th percentile of its finite values, widened by 10%
    of that span on each side; a constant block gets a window of +-10% of
    its value (at least +-1e-3); a block without finite values gives (-1, 1).
    """

    def __init__(self, n: int, *, bins: int = 50, hist_range: tuple[float, float] | None = None,
                 output_range: tuple[float, float] | None = None, block_rows: int = BLOCK_ROWS,
                 first_block_range: tuple[float, float] | None = None) -> None:
        self.n = _check_positive_int(n, "n")
        self.bins = _check_positive_int(bins, "bins")
        self.block_rows = _check_positive_int(block_rows, "block_rows")
        self.hist_range = _check_range(hist_range, "hist_range")
        self.output_range = _check_range(output_range, "output_range")
        if self.hist_range is not None:
            self.range_source = "config"
            self._edges: tuple[float, float] | None = self.hist_range
        elif self.output_range is not None:
            self.range_source = "output"
            self._edges = self.output_range
        else:
            self.range_source = "first_block"
            # A stream that does not start at row 0 (a shard) is given its dataset's first-block range.
            self._edges = _check_range(first_block_range, "first_block_range")
        if self.output_range is not None:
            lo, hi = self.output_range
            width = hi - lo
            self._sat_lo = lo + _SATURATION_FRACTION * width
            self._sat_hi = hi - _SATURATION_FRACTION * width
        self._totals = _Totals(self.n, self.bins)
        self._rows = 0
        self._carry: np.ndarray | None = None
        self._carry_len = 0
        self._conv: np.ndarray | None = None
        self._scratch: np.ndarray | None = None

    # ------------------------------------------------------------------ input
    def update(self, a: np.ndarray) -> None:
        """Add a batch of post-activation values of shape ``(rows, n)``."""
        a = self._check_batch(a)
        rows = a.shape[0]
        if rows == 0:
            return
        br = self.block_rows
        pos = 0
        if self._carry_len:
            take = min(br - self._carry_len, rows)
            self._carry[self._carry_len:self._carry_len + take] = a[:take]
            self._carry_len += take
            pos = take
            if self._carry_len == br:
                self._reduce_into(self._totals, self._carry)
                self._carry_len = 0
        # Whole blocks straight from the input (converted to float64, if at all, as they are reduced).
        while rows - pos >= br:
            self._reduce_into(self._totals, a[pos:pos + br])
            pos += br
        if pos < rows:
            if self._carry is None:
                self._carry = np.empty((br, self.n), dtype=np.float64)
            self._carry[:rows - pos] = a[pos:]
            self._carry_len = rows - pos
        self._rows += rows

    def merge(self, other: "LayerStats") -> "LayerStats":
        """Append ``other``'s rows after this accumulator's rows, in place.

        The result equals a single stream over both row ranges bit for bit
        when this accumulator's row count is a multiple of ``block_rows``;
        otherwise this accumulator's partial block is reduced on its own
        first, so the later blocks are not aligned as in a single stream and
        the moments differ at rounding level (counts, extrema and fractions
        stay exact). Both histograms must share their edges: give both the
        same ``hist_range`` or ``output_range``. With first-block ranges only
        an empty accumulator (which adopts the other's range) or an ``other``
        that has not completed a block (its rows are simply fed) can merge.

        Raises:
            TypeError: ``other`` is not a LayerStats.
            ValueError: Different ``n``, ``bins`` or ``output_range``, or
                different histogram edges.
        """
        if not isinstance(other, LayerStats):
            raise TypeError(f"can only merge a LayerStats, got {type(other).__name__}")
        if (other.n, other.bins, other.output_range) != (self.n, self.bins, self.output_range):
            raise ValueError("cannot merge LayerStats with different n, bins or output_range: "
                             f"{(self.n, self.bins, self.output_range)} vs "
                             f"{(other.n, other.bins, other.output_range)}")
        o_totals = other._totals.copy()
        o_carry = other._carry[:other._carry_len].copy() if other._carry_len else None
        o_edges = other._edges
        if o_totals.rows:
            mine = self._edges
            if mine is None and self._carry_len:
                mine = robust_range(self._carry[:self._carry_len])
            if mine is not None and mine != o_edges:
                raise ValueError(f"cannot merge histograms with different ranges: {mine} vs {o_edges}")
            if self._carry_len:
                self._reduce_into(self._totals, self._carry[:self._carry_len])
                self._carry_len = 0
            self._edges = o_edges
            self._totals.absorb(o_totals)
            self._rows += o_totals.rows
        if o_carry is not None:
            self.update(o_carry)
        return self

    # ----------------------------------------------------------------- output
    def result(self) -> dict:
        """Statistics of every row seen so far, as JSON-ready plain values.

        Over the finite values v: mean = sum(v) / n_finite; std = sqrt(sum((v - mean)**2) / n_finite).
        NaN/inf results (and statistics of no value) are None. Does not
        change the accumulator: it can be called repeatedly and updates may
        follow.

        Returns:
            Dict with ``count``, ``rows``, ``mean``, ``std``, ``min``, ``max``,
            ``frac_zero``, ``dead_units``, ``frac_saturated``, ``nonfinite``
            and ``hist`` (``edges``, ``counts``, ``range_source``).
        """
        totals = self._totals
        edges = self._edges
        if self._carry_len:
            totals = totals.copy()
            part = self._carry[:self._carry_len]
            if edges is None:
                edges = robust_range(part)
            self._reduce_block(totals, part, edges)
        if edges is None:
            edges = (-1.0, 1.0)
        count = self._rows * self.n
        finite, mean, m2 = totals.fold_moments()
        std = math.sqrt(m2 / finite) if finite else None
        if not finite:
            mean = None
        return {
            "count": count,
            "rows": self._rows,
            "mean": _json_float(mean),
            "std": _json_float(std),
            "min": _json_float(totals.vmin) if finite else None,
            "max": _json_float(totals.vmax) if finite else None,
            "frac_zero": totals.zeros / count if count else None,
            "dead_units": int(self.n - np.count_nonzero(totals.live)) if self._rows else 0,
            "frac_saturated": (totals.saturated / count
                               if count and self.output_range is not None else None),
            "nonfinite": totals.nonfinite,
            "hist": {
                "edges": np.linspace(edges[0], edges[1], self.bins + 1).tolist(),
                "counts": totals.counts.tolist(),
                "range_source": self.range_source,
            },
        }

    def state(self) -> dict[str, np.ndarray]:
        """The accumulator as arrays (for ``np.savez``), so that runs over row ranges can merge.

        ``from_state`` restores it exactly: block moments, counts, histogram, the partial block.
        """
        t = self._totals
        return {
            "rows": np.array([self._rows, t.rows, t.zeros, t.saturated, t.nonfinite], dtype=np.int64),
            "moments": np.array(t.moments, dtype=np.float64).reshape(-1, 3),
            "extrema": np.array([t.vmin, t.vmax], dtype=np.float64),
            "counts": t.counts.copy(),
            "live": t.live.copy(),
            "edges": np.array(self._edges if self._edges is not None else [], dtype=np.float64),
            "carry": (self._carry[:self._carry_len].copy() if self._carry_len
                      else np.empty((0, self.n), dtype=np.float64)),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], **kwargs) -> "LayerStats":
        """Rebuilds an accumulator from ``state()``; ``kwargs`` as for the constructor."""
        acc = cls(**kwargs)
        t = acc._totals
        rows, t.rows, t.zeros, t.saturated, t.nonfinite = (int(v) for v in state["rows"])
        t.moments = [(int(c), float(m), float(q)) for c, m, q in state["moments"]]
        t.vmin, t.vmax = (float(v) for v in state["extrema"])
        t.counts = np.array(state["counts"], dtype=np.int64)
        t.live = np.array(state["live"], dtype=bool)
        if len(state["edges"]):
            acc._edges = (float(state["edges"][0]), float(state["edges"][1]))
        acc._rows = rows - len(state["carry"])
        if len(state["carry"]):
            acc.update(np.asarray(state["carry"], dtype=np.float64))
        return acc

    def __repr__(self) -> str:
        return (f"LayerStats(n={self.n}, rows={self._rows}, bins={self.bins}, "
                f"range_source={self.range_source!r})")

    # -------------------------------------------------------------- internals
    def _check_batch(self, a) -> np.ndarray:
        a = np.asarray(a)
        if a.dtype.kind != "f":
            raise TypeError(f"activations must be a floating-point array, got dtype {a.dtype}")
        if a.ndim != 2 or a.shape[1] != self.n:
            raise ValueError(f"activations must have shape (rows, {self.n}), got {a.shape}")
        if a.dtype == np.float64 and not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        return a

    def _as_float64(self, block: np.ndarray) -> np.ndarray:
        if block.dtype == np.float64:
            return block
        if self._conv is None:
            self._conv = np.empty((self.block_rows, self.n), dtype=np.float64)
        out = self._conv[:block.shape[0]]
        np.copyto(out, block)
        return out

    def _reduce_into(self, totals: _Totals, x: np.ndarray) -> None:
        if self._edges is None:
            self._edges = robust_range(x.astype(np.float64, copy=False))
        self._reduce_block(totals, x, self._edges)

    def _reduce_block(self, totals: _Totals, x: np.ndarray, edges: tuple[float, float]) -> None:
        """Reduce one block (rows x n, float32 or float64) and append it to ``totals``."""
        blk = _Totals(self.n, self.bins)
        blk.rows = x.shape[0]
        kernels = _compiled_stats()
        if kernels is not None:
            flat = np.ascontiguousarray(x).reshape(-1)
            total, vmin, vmax = kernels.sum_min_max(flat)
        else:
            flat = self._as_float64(x).reshape(-1)    # C-contiguous
            with np.errstate(invalid="ignore", over="ignore"):   # +inf and -inf: NaN, handled below
                total, vmin = float(flat.sum()), None
        if math.isfinite(total):
            values = flat
        else:
            # Rare path: some value is NaN/inf (or the sum overflowed).
            finite = np.isfinite(flat)
            blk.nonfinite = int(flat.size - np.count_nonzero(finite))
            values = (flat[finite] if blk.nonfinite else flat).astype(np.float64, copy=False)
            total, vmin = float(values.sum()), None
        size = values.size
        if size:
            if vmin is None:
                vmin, vmax = values.min(), values.max()
            blk.vmin, blk.vmax = float(vmin), float(vmax)
            mean = total / size
            if kernels is not None:
                lo, hi = edges
                sat = (self._sat_lo, self._sat_hi) if self.output_range is not None else (-math.inf, math.inf)
                m2, blk.counts, saturated, zeros = kernels.centred_and_hist(
                    values, mean, lo, self.bins / (hi - lo), self.bins, *sat)
                blk.saturated, blk.zeros = int(saturated), int(zeros)
            else:
                m2, blk.counts = self._centred_and_hist(values, mean, edges, blk.vmin, blk.vmax)
                if self.output_range is not None and (blk.vmin <= self._sat_lo or blk.vmax >= self._sat_hi):
                    blk.saturated = (int(np.count_nonzero(values <= self._sat_lo))
                                     + int(np.count_nonzero(values >= self._sat_hi)))
                if blk.vmin <= 0.0 <= blk.vmax:
                    blk.zeros = int(np.count_nonzero(values == 0.0))
            blk.moments.append((size, mean, float(m2)))
        if blk.zeros and not totals.live.all():
            blk.live = np.logical_or.reduce(x != 0.0, axis=0)
        else:
            # No zero in the block (NaN is not zero), or every unit is already
            # known to be alive: either way all units are alive afterwards.
            blk.live[:] = True
        totals.absorb(blk)

    def _centred_and_hist(self, values: np.ndarray, mean: float, edges: tuple[float, float],
                          vmin: float, vmax: float) -> tuple[float, np.ndarray]:
        """Sum of squared deviations from ``mean`` and histogram counts of a 1-D block.

        Both are computed chunk by chunk so temporaries stay cache-resident;
        the chunking is fixed relative to the block, so results are too.
        """
        bins = self.bins
        lo, hi = edges
        scale = bins / (hi - lo)
        # The element-wise map (v - lo) * scale is monotone and rounds exactly
        # like this scalar version, so the extremes decide whether any index
        # can leave [0, bins) and clipping is needed at all.
        clip = (vmin - lo) * scale < 0.0 or (vmax - lo) * scale >= bins
        pair = bins <= _PAIR_MAX_BINS
        nbins = bins * bins if pair else bins
        if self._scratch is None:
            self._scratch = np.empty(_CHUNK + _CHUNK // 2, dtype=np.float64)
        counts = np.zeros(nbins, dtype=np.int64)
        odd = np.zeros(bins, dtype=np.int64)
        m2 = 0.0
        size = values.size
        for start in range(0, size, _CHUNK):
            chunk = values[start:start + _CHUNK]
            m = chunk.size
            t = self._scratch[:m]
            # NumPy rather than BLAS for the sum of squares: BLAS may split a
            # dot product across threads, making the rounding depend on the
            # thread count.
            np.subtract(chunk, mean, out=t)
            np.multiply(t, t, out=t)
            m2 += float(t.sum())
            np.subtract(chunk, lo, out=t)
            np.multiply(t, scale, out=t)
            if clip:
                np.clip(t, 0.0, bins - 1, out=t)
            if pair:
                # Two values share one counter index i0*bins + i1: half as
                # many scattered increments, which dominate the cost. Flooring
                # first keeps the combined index an exact integer.
                np.floor(t, out=t)
                h = m // 2
                half = self._scratch[_CHUNK:_CHUNK + h]
                np.multiply(t[0:2 * h:2], bins, out=half)
                np.add(half, t[1:2 * h:2], out=half)
                counts += np.bincount(half.astype(np.intp), minlength=nbins)
                if m % 2:
                    odd[int(t[m - 1])] += 1
            else:
                counts += np.bincount(t.astype(np.intp), minlength=nbins)
        if pair:
            table = counts.reshape(bins, bins)
            counts = table.sum(axis=0) + table.sum(axis=1) + odd
        return m2, counts


def _compiled_stats():
    """:mod:`runner.compiled_stats` where the compiled kernels are in use (see
    ``layers.activations.compiled_kernels``; the runner allows them only for
    large runs), else None."""
    from layers.activations import compiled_kernels

    if compiled_kernels() is None:
        return None
    from runner import compiled_stats
    return compiled_stats


def _json_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
