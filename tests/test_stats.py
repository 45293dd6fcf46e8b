"""Tests for runner.stats.LayerStats against direct NumPy recomputation."""

from __future__ import annotations

import json
import warnings
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.stats import LayerStats


@pytest.fixture(autouse=True, params=["numpy", "compiled"])
def reduction(request, monkeypatch):
    """Every test runs on the NumPy block reduction and, where numba is
    installed, on the compiled one (runner.compiled_stats)."""
    import layers.activations as A

    if request.param == "numpy":
        monkeypatch.setattr(A, "_COMPILED", None)
    else:
        pytest.importorskip("numba")
        monkeypatch.delenv(A.COMPILED_ENV, raising=False)
        monkeypatch.setattr(A, "_COMPILED", ...)
    return request.param


# the `reduction` fixture holds for every example of a property test
FIXTURE_OK = [HealthCheck.function_scoped_fixture]


def feed(stats: LayerStats, data: np.ndarray, cuts=()) -> LayerStats:
    """Feed ``data`` split at the sorted row indices ``cuts``."""
    bounds = [0, *sorted(cuts), data.shape[0]]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        stats.update(data[lo:hi])
    return stats


def reference(data: np.ndarray, edges: list[float], output_range=None) -> dict:
    """Independent recomputation over the whole concatenated array."""
    flat = data.astype(np.float64).ravel()
    finite = flat[np.isfinite(flat)]
    lo, hi = edges[0], edges[-1]
    counts, _ = np.histogram(np.clip(finite, lo, hi), bins=np.asarray(edges))
    out = {
        "count": flat.size,
        "rows": data.shape[0],
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "frac_zero": np.count_nonzero(flat == 0) / flat.size,
        "dead_units": int(np.count_nonzero((data == 0).all(axis=0))),
        "nonfinite": int(flat.size - finite.size),
        "counts": counts.tolist(),
    }
    if output_range is not None:
        olo, ohi = output_range
        eps = 0.01 * (ohi - olo)
        out["frac_saturated"] = np.count_nonzero((finite <= olo + eps) | (finite >= ohi - eps)) / flat.size
    return out


def assert_matches_reference(res: dict, ref: dict, rel: float = 1e-12) -> None:
    for key in ("count", "rows", "min", "max", "frac_zero", "dead_units", "nonfinite"):
        assert res[key] == ref[key], key
    assert res["mean"] == pytest.approx(ref["mean"], rel=rel, abs=1e-15)
    assert res["std"] == pytest.approx(ref["std"], rel=rel)
    assert res["hist"]["counts"] == ref["counts"]
    if "frac_saturated" in ref:
        assert res["frac_saturated"] == ref["frac_saturated"]


@pytest.fixture(scope="module")
def sigmoid_data() -> np.ndarray:
    rng = np.random.default_rng(1)
    pre = rng.standard_normal((3000, 13)) * 4.0
    return 1.0 / (1.0 + np.exp(-pre))


def test_matches_numpy_reference_small_blocks(sigmoid_data):
    res = feed(LayerStats(13, bins=30, output_range=(0.0, 1.0), block_rows=256),
               sigmoid_data, cuts=[1, 700, 701, 2048]).result()
    assert res["hist"]["range_source"] == "output"
    assert res["hist"]["edges"][0] == 0.0 and res["hist"]["edges"][-1] == 1.0
    assert_matches_reference(res, reference(sigmoid_data, res["hist"]["edges"], (0.0, 1.0)))
    assert sum(res["hist"]["counts"]) == 3000 * 13
    assert 0.0 < res["frac_saturated"] < 1.0


def test_matches_reference_with_multi_chunk_blocks():
    # 4096 rows x 13 units per block is larger than one inner chunk and the
    # trailing partial block has an odd number of values.
    rng = np.random.default_rng(2)
    data = rng.standard_normal((9001, 13)) * 3.0 + 0.25
    res = feed(LayerStats(13), data, cuts=[5000]).result()
    assert res["hist"]["range_source"] == "first_block"
    assert_matches_reference(res, reference(data, res["hist"]["edges"]))
    assert sum(res["hist"]["counts"]) == data.size


def test_collapsed_distribution_keeps_precision():
    # Outputs piled around 0.5 with a tiny spread (weight std 0.01 case).
    rng = np.random.default_rng(3)
    data = 0.5 + 1e-4 * rng.standard_normal((5000, 10))
    res = feed(LayerStats(10, output_range=(0.0, 1.0), block_rows=1000), data, cuts=[333]).result()
    assert_matches_reference(res, reference(data, res["hist"]["edges"], (0.0, 1.0)))
    assert res["frac_saturated"] == 0.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, *FIXTURE_OK])
@given(cuts=st.lists(st.integers(min_value=0, max_value=450), max_size=8),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_bit_identical_for_any_batch_split(cuts, dtype):
    rng = np.random.default_rng(4)
    data = (rng.standard_normal((450, 7)) * 2.0).astype(dtype)
    data[::17, 3] = 0.0
    kwargs = dict(bins=20, block_rows=64)
    whole = feed(LayerStats(7, **kwargs), data).result()
    split = feed(LayerStats(7, **kwargs), data, cuts).result()
    assert split == whole


@settings(max_examples=10, deadline=None, suppress_health_check=FIXTURE_OK)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10000), min_size=1, max_size=4))
def test_bit_identical_with_default_blocks(cuts):
    rng = np.random.default_rng(5)
    data = np.tanh(rng.standard_normal((10000, 9)))
    whole = feed(LayerStats(9, output_range=(-1.0, 1.0)), data).result()
    split = feed(LayerStats(9, output_range=(-1.0, 1.0)), data, cuts).result()
    assert split == whole
    one_by_one = LayerStats(9, output_range=(-1.0, 1.0))
    for row in np.array_split(data, 37):
        one_by_one.update(row)
    assert one_by_one.result() == whole


def test_histogram_edges_and_clipping_hand_computed():
    values = np.array([[-5.0, 0.0, 0.25, 0.5, 0.99, 1.0, 7.0, 0.2499999]])
    res = feed(LayerStats(8, bins=4, hist_range=(0.0, 1.0)), values).result()
    assert res["hist"]["edges"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # -5, 0, 0.2499999 -> bin 0; 0.25 -> 1; 0.5 -> 2; 0.99, 1.0 (== hi), 7 -> 3
    assert res["hist"]["counts"] == [3, 1, 1, 3]
    assert res["hist"]["range_source"] == "config"
    assert res["frac_saturated"] is None


def test_frac_saturated_sigmoid_hand_computed():
    values = np.array([[0.0, 0.005, 0.01, 0.0100001],
                       [0.5, 0.98999, 0.99, 1.0]])
    res = feed(LayerStats(4, output_range=(0.0, 1.0)), values).result()
    # inclusive thresholds: 0.0, 0.005, 0.01, 0.99, 1.0
    assert res["frac_saturated"] == 5 / 8
    assert res["hist"]["counts"][0] == 4 and res["hist"]["counts"][-1] == 3


def test_dead_units_and_zeros_hand_computed():
    data = np.array([[0.0, 1.0, 0.0, -0.0, 2.0],
                     [0.0, 0.0, 0.0, 0.0, 3.0],
                     [0.0, 0.5, 0.0, 0.0, np.nan]])
    res = feed(LayerStats(5, block_rows=2), data).result()
    assert res["dead_units"] == 3          # columns 0, 2, 3 (-0.0 is zero)
    assert res["frac_zero"] == 10 / 15
    assert res["nonfinite"] == 1
    data[1, 2] = np.nan                    # NaN is not zero: column 2 is no longer dead
    assert feed(LayerStats(5, block_rows=2), data).result()["dead_units"] == 2


def test_nonfinite_values_are_excluded():
    rng = np.random.default_rng(6)
    data = rng.standard_normal((500, 6))
    data[3, 1] = np.nan
    data[100, 2] = np.inf
    data[499, 5] = -np.inf
    data[250, 0] = np.nan
    res = feed(LayerStats(6, bins=16, block_rows=64, output_range=(-3.0, 3.0)), data, cuts=[7, 300]).result()
    assert res["nonfinite"] == 4
    assert sum(res["hist"]["counts"]) == res["count"] - 4
    assert_matches_reference(res, reference(data, res["hist"]["edges"], (-3.0, 3.0)))
    json.dumps(res, allow_nan=False)


def test_a_block_with_both_infinities_is_reduced_without_warnings():
    # +inf + -inf is NaN in the block's sum: the rare path must take over silently
    data = np.array([[np.inf, 1.0], [-np.inf, 3.0], [2.0, 4.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = feed(LayerStats(2, block_rows=4), data).result()
    assert res["nonfinite"] == 2 and res["count"] == 6 and res["mean"] == 2.5
    assert res["min"] == 1.0 and res["max"] == 4.0


def test_all_nonfinite_gives_none():
    data = np.full((3, 2), np.nan)
    res = feed(LayerStats(2), data).result()
    assert res["mean"] is None and res["std"] is None and res["min"] is None and res["max"] is None
    assert res["nonfinite"] == 6 and res["hist"]["edges"][0] == -1.0 and sum(res["hist"]["counts"]) == 0
    json.dumps(res, allow_nan=False)


def test_float32_input_matches_float64_of_same_values(sigmoid_data):
    data32 = sigmoid_data.astype(np.float32)
    r32 = feed(LayerStats(13, output_range=(0.0, 1.0), block_rows=512), data32, cuts=[100, 1500]).result()
    r64 = feed(LayerStats(13, output_range=(0.0, 1.0), block_rows=512), data32.astype(np.float64)).result()
    assert r32 == r64
    assert_matches_reference(r32, reference(data32, r32["hist"]["edges"], (0.0, 1.0)))


def test_merge_aligned_is_exact_and_unaligned_is_close(sigmoid_data):
    kwargs = dict(output_range=(0.0, 1.0), block_rows=200)
    single = feed(LayerStats(13, **kwargs), sigmoid_data).result()
    a = feed(LayerStats(13, **kwargs), sigmoid_data[:1000], cuts=[3])
    b = feed(LayerStats(13, **kwargs), sigmoid_data[1000:], cuts=[999])
    assert a.merge(b) is a
    assert a.result() == single

    a = feed(LayerStats(13, **kwargs), sigmoid_data[:1234])
    b = feed(LayerStats(13, **kwargs), sigmoid_data[1234:])
    merged = a.merge(b).result()
    for key in ("count", "rows", "min", "max", "frac_zero", "frac_saturated", "dead_units", "nonfinite", "hist"):
        assert merged[key] == single[key], key
    assert merged["mean"] == pytest.approx(single["mean"], rel=1e-13)
    assert merged["std"] == pytest.approx(single["std"], rel=1e-13)


def test_merge_first_block_ranges():
    rng = np.random.default_rng(7)
    data = rng.standard_normal((300, 4))
    single = feed(LayerStats(4, block_rows=100), data).result()
    empty = LayerStats(4, block_rows=100)
    assert empty.merge(feed(LayerStats(4, block_rows=100), data)).result() == single
    # Two independent first-block ranges cannot be merged.
    a = feed(LayerStats(4, block_rows=100), data[:100])
    b = feed(LayerStats(4, block_rows=100), data[100:] * 10)
    with pytest.raises(ValueError, match="different ranges"):
        a.merge(b)
    assert a.result() == feed(LayerStats(4, block_rows=100), data[:100]).result()


def test_first_block_range_rule():
    rng = np.random.default_rng(8)
    data = rng.standard_normal((150, 5))
    res = feed(LayerStats(5, block_rows=100), data, cuts=[30]).result()
    p_lo, p_hi = np.percentile(data[:100], [0.5, 99.5])
    span = p_hi - p_lo
    assert res["hist"]["edges"][0] == pytest.approx(p_lo - 0.1 * span, rel=1e-14)
    assert res["hist"]["edges"][-1] == pytest.approx(p_hi + 0.1 * span, rel=1e-14)
    const = feed(LayerStats(3), np.full((4, 3), 2.0)).result()
    lo, hi = const["hist"]["edges"][0], const["hist"]["edges"][-1]
    assert lo < 2.0 < hi
    assert sum(const["hist"]["counts"]) == 12 and const["std"] == 0.0


def test_result_is_idempotent_and_updates_continue():
    rng = np.random.default_rng(9)
    data = rng.standard_normal((250, 3))
    s = feed(LayerStats(3, block_rows=64), data[:100])
    first = s.result()
    assert s.result() == first
    s.update(data[100:])
    assert s.result() == feed(LayerStats(3, block_rows=64), data).result()


def test_empty_and_zero_row_batches():
    s = LayerStats(4, output_range=(0.0, 1.0))
    s.update(np.empty((0, 4)))
    res = s.result()
    assert res["count"] == 0 and res["rows"] == 0 and res["mean"] is None
    assert res["frac_zero"] is None and res["frac_saturated"] is None and res["dead_units"] == 0
    assert len(res["hist"]["edges"]) == 51 and sum(res["hist"]["counts"]) == 0
    json.dumps(res, allow_nan=False)


def test_bad_input_raises():
    s = LayerStats(3)
    with pytest.raises(TypeError):
        s.update(np.ones((2, 3), dtype=np.int64))
    with pytest.raises(ValueError):
        s.update(np.ones((2, 4)))
    with pytest.raises(ValueError):
        s.update(np.ones(3))
    with pytest.raises(ValueError):
        LayerStats(3, hist_range=(1.0, 0.0))
    with pytest.raises(ValueError):
        LayerStats(3, output_range=(0.0, math.inf))
    with pytest.raises(ValueError):
        LayerStats(0)
    with pytest.raises(TypeError):
        LayerStats(3, bins=2.5)
    with pytest.raises(ValueError):
        LayerStats(3).merge(LayerStats(4))
    with pytest.raises(TypeError):
        LayerStats(3).merge({"n": 3})


def test_non_contiguous_input():
    rng = np.random.default_rng(10)
    base = rng.standard_normal((6, 400))
    res = feed(LayerStats(6, block_rows=50), base.T, cuts=[123]).result()
    assert res == feed(LayerStats(6, block_rows=50), np.ascontiguousarray(base.T)).result()


@settings(suppress_health_check=FIXTURE_OK)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300), st.sampled_from([0.5, 10.0, 50.0, 99.5]))
def test_percentiles_without_numpy_ma_equal_numpy_percentile(values, q):
    from runner.stats import _percentiles

    flat = np.array(values)
    assert _percentiles(flat, (q,))[0] == pytest.approx(float(np.percentile(flat, q)), rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_and_numpy_reductions_agree(dtype, reduction, monkeypatch):
    # counts, extrema and bins exactly; the moments to rounding
    import layers.activations as A
    from runner import stats as S

    if reduction == "numpy":
        pytest.skip("compares the two paths once")
    rng = np.random.default_rng(4)
    data = rng.standard_normal((9000, 37)).astype(dtype) * 3
    data[::7, 3] = 0.0
    data[5, 5], data[17, 1], data[40, 2] = np.nan, np.inf, -np.inf
    data[:, 9] = 0.0                                   # a dead unit
    assert S._compiled_stats() is not None
    fast = feed(LayerStats(37, output_range=(-2.0, 4.0), block_rows=1000), data, cuts=[333]).result()
    monkeypatch.setattr(A, "_COMPILED", None)
    assert S._compiled_stats() is None
    slow = feed(LayerStats(37, output_range=(-2.0, 4.0), block_rows=1000), data, cuts=[333]).result()
    for key in ("count", "rows", "min", "max", "frac_zero", "dead_units", "frac_saturated", "nonfinite", "hist"):
        assert fast[key] == slow[key], key
    assert fast["mean"] == pytest.approx(slow["mean"], rel=1e-13)
    assert fast["std"] == pytest.approx(slow["std"], rel=1e-13)
