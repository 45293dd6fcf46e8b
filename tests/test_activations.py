"""Tests for layers.activations.

References are computed independently with mpmath at 50+ significant digits
from the textbook definitions, then rounded to the tested dtype.
"""

from __future__ import annotations

import math
import pickle

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import layers.activations as A
from layers.activations import Activation, activation_names, get_act, register_activation

mp.mp.dps = 60
DTYPES = (np.float32, np.float64)
ROWWISE = {"softmax", "softmin", "log_softmax"}


# --------------------------------------------------------------------------
# mpmath references: textbook formulas, evaluated exactly-enough
# --------------------------------------------------------------------------

def _sig(v):
    return 1 / (1 + mp.exp(-v))


def _tanh(v):
    # mpmath's tanh overflows for huge arguments; at 60 digits it is +-1 there
    if abs(v) > 100:
        return mp.sign(v) * mp.mpf(1)
    return mp.tanh(v)


def _tanh_shrink_ref(v):
    if abs(v) < mp.mpf("1e-4"):
        return v ** 3 / 3 - 2 * v ** 5 / 15 + 17 * v ** 7 / 315
    return v - _tanh(v)


def _gelu_ref(v):
    # beyond |v| = 60 the exact value is v, or underflows below every subnormal
    if abs(v) > 60:
        return v if v > 0 else mp.mpf(0)
    return v / 2 * mp.erfc(-v / mp.sqrt(2))


def _gelu_tanh_ref(v):
    u = mp.sqrt(2 / mp.pi) * (v + mp.mpf("0.044715") * v ** 3)
    return v / (1 + mp.exp(-2 * u))


REF = {
    "step": lambda v: mp.mpf(1) if v > 0 else mp.mpf(0),
    "identity": lambda v: v,
    "bent_identity": lambda v: (mp.sqrt(v * v + 1) - 1) / 2 + v,
    "sigmoid": _sig,
    "log_sigmoid": lambda v: -mp.log1p(mp.exp(-v)),
    "tanh": _tanh,
    "tanh_shrink": _tanh_shrink_ref,
    "hard_tanh": lambda v: max(mp.mpf(-1), min(mp.mpf(1), v)),
    "ReLU": lambda v: max(v, mp.mpf(0)),
    "ReLU6": lambda v: min(max(v, mp.mpf(0)), mp.mpf(6)),
    "softplus": lambda v: mp.log1p(mp.exp(v)),
    "softsign": lambda v: v / (1 + abs(v)),
    "Mish": lambda v: v * _tanh(mp.log1p(mp.exp(v))),
    "tanhExp": lambda v: v * _tanh(mp.exp(v)),
    "hard_sigmoid": lambda v, slope, offset: max(mp.mpf(0), min(mp.mpf(1), slope * v + offset)),
    "hard_shrink": lambda v, lambda_: v if abs(v) > lambda_ else mp.mpf(0),
    "soft_shrink": lambda v, lambda_: mp.sign(v) * max(abs(v) - lambda_, mp.mpf(0)),
    "threshold": lambda v, threshold, value: v if v > threshold else value,
    "leaky_ReLU": lambda v, alpha: v if v > 0 else alpha * v,
    "ELU": lambda v, alpha: v if v > 0 else alpha * mp.expm1(v),
    "SELU": lambda v: mp.mpf(1.0507009873554805) * (
        v if v > 0 else mp.mpf(1.6732632423543772) * mp.expm1(v)),
    "CELU": lambda v, alpha: max(v, mp.mpf(0)) + min(mp.mpf(0), alpha * mp.expm1(v / alpha)),
    "Swish": lambda v, beta: v * _sig(beta * v),
    "GELU": lambda v, approximate: (_gelu_ref(v) if approximate == "none"
                                    else _gelu_tanh_ref(v)),
    "SiLU": lambda v: v * _sig(v),
    "hard_swish": lambda v: v * min(max(v + 3, mp.mpf(0)), mp.mpf(6)) / 6,
    "PReLU": lambda v, init: v if v > 0 else init * v,
    "RReLU": lambda v, lower, upper: v if v > 0 else (lower + upper) / 2 * v,
}


def _row_ref(name, row):
    if name == "softmin":
        row = [-v for v in row]
    out = []
    for i, xi in enumerate(row):
        others = [mp.exp(xj - xi) for j, xj in enumerate(row) if j != i]
        if name == "log_softmax":
            out.append(-mp.log1p(mp.fsum(others)))
        else:
            out.append(1 / (1 + mp.fsum(others)))
    return out


# Parameter sets exercised for every function (defaults plus variants).
PARAM_SETS = {
    "hard_sigmoid": [{}, {"slope": 1 / 6}, {"slope": 0.3, "offset": 0.25}],
    "hard_shrink": [{}, {"lambda_": 1.3}],
    "soft_shrink": [{}, {"lambda_": 1.3}],
    "threshold": [{}, {"threshold": 0.7, "value": -2.5}],
    "leaky_ReLU": [{}, {"alpha": 0.3}, {"alpha": 2.5}],
    "ELU": [{}, {"alpha": 0.7}],
    "CELU": [{}, {"alpha": 0.3}, {"alpha": 2.0}],
    "Swish": [{}, {"beta": 1.7}, {"beta": -0.6}, {"beta": 2.0}],
    "GELU": [{}, {"approximate": "tanh"}],
    "PReLU": [{}, {"init": 0.1}],
    "RReLU": [{}, {"lower": 0.2, "upper": 0.4}],
}


# Every activation with each of its parameter sets.
ALL_CASES = [(n, p) for n in activation_names() for p in PARAM_SETS.get(n, [{}])]


def _cases():
    for name in activation_names():
        if name not in REF and name not in ROWWISE:
            continue
        for params in PARAM_SETS.get(name, [{}]):
            yield name, params


def _grid(dtype):
    fi = np.finfo(dtype)
    mags = [0.0, fi.smallest_subnormal, fi.smallest_subnormal * 7, fi.tiny / 3, fi.tiny,
            1e-30, 1e-8, 1e-4, 1e-3, 0.01, 0.1, 0.3, 0.5, 0.7, 1.0, 1.2, 1.4142, 1.49,
            1.5, 1.6, 2.0, 2.5, 3.0, 4.0, 5.0, 8.0, 9.5, 10.0, 15.0, 20.0, 27.0, 30.0,
            37.5, 38.5, 40.0, 50.0, 87.0, 88.0, 88.8, 100.0, 104.0, 200.0, 700.0,
            708.5, 710.0, 740.0, 745.0, 1e4, 1e10, 1e30, 3e38, float(fi.max)]
    vals = [v for m in mags for v in (m, -m)]
    vals += list(np.linspace(-12, 12, 193)) + list(np.linspace(-2.6, -2.4, 11))
    with np.errstate(over="ignore", under="ignore"):
        arr = np.array(vals, dtype=np.float64).astype(dtype)
    return arr[np.isfinite(arr)]


def _to_dtype(v, dtype):
    with np.errstate(over="ignore", under="ignore"):
        return np.array(float(v), dtype=np.float64).astype(dtype)[()]


def _param_in_dtype(params, dtype):
    out = {}
    for k, v in params.items():
        out[k] = mp.mpf(float(np.array(v, dtype=dtype))) if isinstance(v, float) else v
    return out


def _tolerance_check(name, x, got, ref_mp, dtype, extra=""):
    fi = np.finfo(dtype)
    rtol = 8 * fi.eps
    atol = 2 * fi.smallest_subnormal
    bad = []
    for xi, gi, ri in zip(x, got, ref_mp):
        r = _to_dtype(ri, dtype)
        if not np.isfinite(r):
            continue  # true value not representable
        rf = float(ri)
        if not np.isfinite(gi) or abs(float(gi) - rf) > rtol * abs(rf) + atol:
            bad.append((float(xi), float(gi), rf))
    assert not bad, f"{name}{extra} {np.dtype(dtype).name}: {len(bad)} bad, e.g. {bad[:4]}"


# Kernels with a native-ufunc path and a composite fallback (see
# A._NATIVE_SIMD); the fallback is exercised through the `fallback` fixture.
DISPATCHED = {"tanh", "tanh_shrink", "tanhExp", "softplus", "log_sigmoid", "ELU", "SELU",
              "CELU"}


@pytest.fixture
def fallback(monkeypatch):
    """Pretend NumPy has no SIMD loop for tanh/expm1/log1p and numba is absent:
    the composite NumPy kernels run."""
    monkeypatch.setattr(A, "_NATIVE_SIMD", dict.fromkeys(A._NATIVE_SIMD, False))
    monkeypatch.setattr(A, "_COMPILED", None)


@pytest.fixture(params=["native", "fallback"])
def either_path(request):
    """Run the test once with the dispatch table as detected, once with every
    loop treated as scalar."""
    if request.param == "fallback":
        request.getfixturevalue("fallback")
    return request.param


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,params", list(_cases()),
                         ids=[f"{n}{p}" for n, p in _cases()])
def test_against_mpmath(name, params, dtype):
    _check_against_mpmath(name, params, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,params", [c for c in _cases() if c[0] in DISPATCHED],
                         ids=[f"{n}{p}" for n, p in _cases() if n in DISPATCHED])
def test_against_mpmath_fallback_kernels(name, params, dtype, fallback):
    _check_against_mpmath(name, params, dtype)


def _check_against_mpmath(name, params, dtype):
    act = get_act(name, **params)
    x = _grid(dtype)
    mparams = _param_in_dtype(act.params, dtype)
    if name in ROWWISE:
        rows = [x[i:i + 8] for i in range(0, len(x) - 8, 8)]
        rows += [np.array(r, dtype=dtype) for r in (
            [88.0, -1.3, 0.2], [0.0, -50.0, -700.0], [1e4, -1e4, 0.0], [3.0, 3.0, 1.0],
            [-3e38, 3e38, 1.0], [1e-30, -1e-30, 0.0], [-20.5, -20.5, -20.5],
            [12.3, -87.9, 40.1, 40.1 + 1e-6],
            # within the fast path's range (|x| <= 80): rounding of x - max
            # and near-ties must not cost accuracy there either
            [10.0, -60.0, 60.0 - 1e-5, 0.3], [0.1, -30.3, -30.3, 5.5],
            [-75.0, -79.9, -76.0], [70.0, 70.0, -70.0, 69.99], [-3.0, -3.0 - 3e-7, 2.0, -79.0],
            [79.5, -79.5])]
        for row in rows:
            with np.errstate(all="raise"):
                got = act(row[None, :])[0]
            ref = _row_ref(name, [mp.mpf(float(v)) for v in row])
            _tolerance_check(name, row, got, ref, dtype, extra=f" row {row.tolist()}")
        return
    with np.errstate(all="raise"):
        got = act(x)
    assert got.dtype == dtype and got.shape == x.shape
    ref = [REF[name](mp.mpf(float(v)), **mparams) for v in x]
    _tolerance_check(name, x, got, ref, dtype)


# --------------------------------------------------------------------------
# Hand-computed values and closed forms
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_closed_forms(dtype):
    one = np.array([1.0], dtype=dtype)
    zero = np.array([0.0], dtype=dtype)
    eps = np.finfo(dtype).eps

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=4 * eps, atol=0)

    close(get_act("SELU")(one), [1.0507009873554805])
    close(get_act("softplus")(zero), [math.log(2.0)])
    close(get_act("log_sigmoid")(zero), [-math.log(2.0)])
    close(get_act("sigmoid")(zero), [0.5])
    assert get_act("GELU")(zero)[0] == 0.0
    close(get_act("GELU")(one), [0.5 * (1 + math.erf(1 / math.sqrt(2)))])
    close(get_act("Mish")(one), [math.tanh(math.log1p(math.e))])
    close(get_act("tanhExp")(one), [math.tanh(math.e)])
    close(get_act("bent_identity")(one), [(math.sqrt(2) - 1) / 2 + 1])
    close(get_act("ELU")(-one), [math.expm1(-1.0)])
    close(get_act("hard_swish")(one), [4.0 / 6.0])
    close(get_act("softsign")(one), [0.5])
    close(get_act("RReLU")(-one), [-(1 / 8 + 1 / 3) / 2])
    assert get_act("step")(np.array([-1.0, 0.0, -0.0, 2.0], dtype))[()].tolist() == [0, 0, 0, 1]
    close(get_act("softmax")(np.zeros((2, 4), dtype)), np.full((2, 4), 0.25))
    close(get_act("hard_sigmoid")(np.array([-2.5, 0.0, 2.5], dtype)), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(
        get_act("threshold", threshold=1.0, value=-7.0)(np.array([0.5, 1.0, 1.5], dtype)),
        np.array([-7.0, -7.0, 1.5], dtype))
    np.testing.assert_array_equal(
        get_act("hard_shrink", lambda_=1.0)(np.array([-2.0, -1.0, 0.5, 1.0, 3.0], dtype)),
        np.array([-2.0, 0.0, 0.0, 0.0, 3.0], dtype))
    np.testing.assert_array_equal(
        get_act("soft_shrink", lambda_=1.0)(np.array([-2.0, -1.0, 0.5, 3.0], dtype)),
        np.array([-1.0, 0.0, 0.0, 2.0], dtype))
    # leaky_ReLU follows the definition for alpha > 1 (the seed's max form did not)
    np.testing.assert_array_equal(
        get_act("leaky_ReLU", alpha=2.0)(np.array([-1.0, 3.0], dtype)),
        np.array([-2.0, 3.0], dtype))


def test_hardsigmoid_spelling_is_the_seed_function():
    a = get_act("hardsigmoid")
    assert a.name == "hard_sigmoid" and a.params == {"slope": 0.2, "offset": 0.5}
    torch_like = get_act("hardsigmoid", slope=0.16666666666666666)
    np.testing.assert_allclose(torch_like(np.array([-3.0, 0.0, 3.0])), [0.0, 0.5, 1.0],
                               atol=1e-15)


# --------------------------------------------------------------------------
# NaN and dtype handling
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", activation_names())
def test_nan_propagates(name, dtype):
    x = np.array([[0.5, np.nan, -2.0], [1.0, 2.0, 3.0]], dtype=dtype)
    with np.errstate(all="raise"):
        y = get_act(name)(x)
    assert y.dtype == dtype
    if name in ROWWISE:
        assert np.isnan(y[0]).all() and not np.isnan(y[1]).any()
    else:
        assert np.array_equal(np.isnan(y), np.isnan(x))


@pytest.mark.parametrize("name", activation_names())
def test_integer_and_float16_inputs(name):
    xi = np.array([[-2, 0, 3]], dtype=np.int64)
    act = get_act(name)
    yi = act(xi)
    assert yi.dtype == np.float64
    np.testing.assert_array_equal(yi, act(xi.astype(np.float64)))
    xh = np.array([[-2.0, 0.25, 3.0]], dtype=np.float16)
    yh = act(xh)
    assert yh.dtype == np.float16
    np.testing.assert_array_equal(yh, act(xh.astype(np.float32)).astype(np.float16))


@pytest.mark.parametrize("name,params", ALL_CASES)
def test_empty_inputs(name, params):
    act = get_act(name, **params)
    for dtype in DTYPES:
        for shape in [(0,), (0, 3), (3, 0)]:
            y = act(np.zeros(shape, dtype))
            assert y.shape == shape and y.dtype == dtype


def test_rejects_complex_and_object():
    with pytest.raises(TypeError):
        get_act("ReLU")(np.array([1 + 2j]))
    with pytest.raises(TypeError):
        get_act("ReLU")(np.array(["a"]))


# --------------------------------------------------------------------------
# Hypothesis properties
# --------------------------------------------------------------------------

def _finite_arrays(dtype, min_dims=1):
    return hnp.arrays(
        dtype, hnp.array_shapes(min_dims=min_dims, max_dims=2, min_side=1, max_side=6),
        elements=st.floats(width=np.finfo(dtype).bits, allow_nan=False,
                           allow_infinity=False))


_ALL = activation_names()
_MONOTONE = {"step", "identity", "bent_identity", "sigmoid", "log_sigmoid", "tanh",
             "tanh_shrink", "hard_tanh", "ReLU", "ReLU6", "softplus", "softsign",
             "hard_sigmoid", "leaky_ReLU", "ELU", "SELU", "CELU", "PReLU", "RReLU"}


@settings(max_examples=60, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(DTYPES), name=st.sampled_from(_ALL))
def test_property_dtype_shape_finite_bounds(data, dtype, name):
    x = data.draw(_finite_arrays(dtype))
    act = get_act(name)
    with np.errstate(all="raise"):
        y = act(x)
    assert y.dtype == dtype and y.shape == x.shape
    # Overflow is legitimate only where the true value exceeds the range.
    big = np.abs(x.astype(np.float64)) > np.finfo(dtype).max / 2
    if name in ROWWISE:
        big = np.repeat(big.any(axis=-1, keepdims=True), x.shape[-1], axis=-1)
    assert np.isfinite(y[~big]).all()
    if act.output_range is not None:
        lo, hi = act.output_range
        assert ((y >= lo) & (y <= hi)).all()


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(DTYPES), name=st.sampled_from(sorted(_MONOTONE)))
def test_property_monotone(data, dtype, name):
    x = np.sort(data.draw(_finite_arrays(dtype)).ravel())
    with np.errstate(all="raise"):
        y = get_act(name)(x)
    assert (y[1:] >= y[:-1]).all()  # inf >= inf holds where both overflow


@settings(max_examples=60, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(DTYPES))
def test_property_softmax_rows(data, dtype):
    x = data.draw(hnp.arrays(dtype, st.tuples(st.integers(1, 5), st.integers(1, 9)),
                             elements=st.floats(-1e4, 1e4, width=np.finfo(dtype).bits)))
    eps = np.finfo(dtype).eps
    with np.errstate(all="raise"):
        p = get_act("softmax")(x)
        q = get_act("softmin")(x)
        ls = get_act("log_softmax")(x)
    n = x.shape[-1]
    for r in (p, q):
        np.testing.assert_allclose(r.astype(np.float64).sum(axis=-1), 1.0, rtol=0,
                                   atol=(n + 2) * eps)
    lse = np.log(np.exp(ls.astype(np.float64)).sum(axis=-1))
    np.testing.assert_allclose(lse, 0.0, atol=(n + 2) * eps)
    assert (ls <= 0).all()
    np.testing.assert_array_equal(get_act("softmax")(x[0]), p[0])


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------

def _param_variants():
    for name in activation_names():
        for key, default in A._REGISTRY[name].defaults.items():
            yield name, key, default


_CHANGED = {"approximate": "tanh"}


@pytest.mark.parametrize("name,key,default", list(_param_variants()))
def test_every_parameter_changes_the_result(name, key, default):
    new = _CHANGED.get(key, default * 1.5 + 0.3 if isinstance(default, float) else None)
    x = np.linspace(-3.0, 3.0, 61)
    base = get_act(name)(x)
    try:
        act = get_act(name, **{key: new})
    except ValueError:  # e.g. RReLU lower must stay <= upper
        act = get_act(name, **{key: default * 0.5})
    changed = act(x)
    assert not np.array_equal(base, changed), (name, key, new)


def test_param_types_and_values():
    assert get_act("leaky_ReLU", alpha=1).params == {"alpha": 1.0}
    assert get_act("ELU", alpha=np.float32(0.5)).params == {"alpha": 0.5}
    with pytest.raises(TypeError, match=r"leaky_ReLU got unexpected parameter 'beta'; "
                                        r"accepted: alpha=0.01"):
        get_act("leaky_ReLU", beta=1.0)
    with pytest.raises(TypeError, match=r"leaky_ReLU parameter 'alpha' must be a real "
                                        r"number.*accepted: alpha=0.01"):
        get_act("leaky_ReLU", alpha="0.1")
    with pytest.raises(TypeError, match="ELU parameter 'alpha'"):
        get_act("ELU", alpha=True)
    with pytest.raises(ValueError, match="must be finite"):
        get_act("ELU", alpha=float("nan"))
    with pytest.raises(ValueError, match=r"GELU .*approximate.*accepted: approximate='none'"):
        get_act("GELU", approximate="foo")
    with pytest.raises(TypeError, match="GELU parameter 'approximate' must be a string"):
        get_act("GELU", approximate=1)
    with pytest.raises(ValueError, match=r"RReLU needs lower <= upper"):
        get_act("RReLU", lower=0.5, upper=0.1)
    with pytest.raises(ValueError, match="lambda_"):
        get_act("soft_shrink", lambda_=-1)
    with pytest.raises(ValueError, match="alpha"):
        get_act("CELU", alpha=0)
    with pytest.raises(TypeError, match=r"^sigmoid takes no parameters; got 'alpha'$"):
        get_act("sigmoid", alpha=1.0)


def test_output_range_values():
    assert get_act("sigmoid").output_range == (0.0, 1.0)
    assert get_act("tanh").output_range == (-1.0, 1.0)
    assert get_act("ReLU6").output_range == (0.0, 6.0)
    assert get_act("hard_sigmoid", slope=3.0).output_range == (0.0, 1.0)
    for name in ("ReLU", "ELU", "identity", "Swish", "GELU", "log_softmax"):
        assert get_act(name).output_range is None


# --------------------------------------------------------------------------
# Names, registry, errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("spellings", [
    ("leaky_ReLU", "leakyReLU", "LeakyReLU", "leaky-relu", "LEAKY_RELU"),
    ("ReLU", "relu"), ("SiLU", "silu"), ("hard_tanh", "hardtanh", "Hardtanh"),
    ("log_sigmoid", "logsigmoid", "LogSigmoid"), ("log_softmax", "LogSoftmax"),
    ("hard_sigmoid", "hardsigmoid"), ("hard_swish", "hardswish", "Hardswish"),
    ("soft_shrink", "softshrink"), ("hard_shrink", "hardshrink"),
    ("tanh_shrink", "tanhshrink", "Tanhshrink"), ("ReLU6", "relu6"), ("GELU", "gelu"),
    ("Mish", "mish"), ("SELU", "selu"), ("CELU", "celu"), ("ELU", "elu"),
    ("PReLU", "prelu"), ("RReLU", "rrelu"), ("threshold", "Threshold"),
    ("softmin", "Softmin"), ("softplus", "Softplus"), ("softsign", "Softsign"),
    ("sigmoid", "Sigmoid", "logistic"), ("tanh", "Tanh"), ("identity", "Identity", "linear"),
    ("Swish", "swish"), ("tanhExp", "tanh_exp"), ("step", "heaviside"),
])
def test_spellings(spellings):
    names = {get_act(s).name for s in spellings}
    assert len(names) == 1


def test_unknown_name_lists_closest_and_allowed():
    with pytest.raises(ValueError) as info:
        get_act("sigmod")
    msg = str(info.value)
    assert msg.startswith("unknown activation 'sigmod'; closest: sigmoid")
    assert "log_sigmoid" in msg.split("allowed:")[0]
    assert "hard_sigmoid" in msg.split("allowed:")[0]
    assert msg.endswith("allowed: " + ", ".join(activation_names()))
    assert "\n" not in msg
    with pytest.raises(ValueError, match=r"^unknown activation 'zzzz'; allowed: step"):
        get_act("zzzz")


def test_no_collisions_in_builtin_registry():
    seen = {}
    for name, spec in A._REGISTRY.items():
        for spelling in (name, *spec.aliases):
            key = A._normalise(spelling)
            assert seen.setdefault(key, name) == name


def test_table_markdown():
    table = activation_table_markdown = A.activation_table_markdown()
    lines = table.strip().splitlines()
    assert lines[0].startswith("| name | aliases | parameters | formula | output range |")
    assert len(lines) == 2 + len(activation_names())
    assert "`alpha=0.01`" in table and "[0, 1]" in table and "unbounded" in table
    del activation_table_markdown


def test_register_user_activation_and_collisions():
    @register_activation(aliases=("cube_it",), output_range=None, formula="x^3 * k")
    def user_cube_test(x, k=1.0):
        return x * x * x * k

    act = get_act("UserCubeTest", k=2)
    assert act.name == "user_cube_test" and act.params == {"k": 2.0}
    np.testing.assert_array_equal(act(np.array([2.0])), [16.0])
    assert get_act("cube-it").name == "user_cube_test"
    assert act(np.array([2], dtype=np.int32)).dtype == np.float64
    out = np.zeros(1)
    assert act(np.array([1.0]), out=out) is out and out[0] == 2.0
    with pytest.raises(TypeError, match="unexpected parameter 'j'; accepted: k=1.0"):
        get_act("user_cube_test", j=1)
    with pytest.raises(ValueError, match="collides"):
        register_activation(lambda x: x, name="Leaky-ReLU")
    with pytest.raises(ValueError, match="collides"):
        register_activation(lambda x: x, name="fresh_name_xyz", aliases=("relu",))
    with pytest.raises(ValueError):
        register_activation(user_cube_test)
    with pytest.raises(TypeError, match="default"):
        register_activation(lambda x, k: x, name="needs_default_xyz")

    @register_activation
    def plain_user_fn_xyz(x):
        return x + 1

    assert get_act("plain_user_fn_xyz")(np.array([1.0]))[0] == 2.0
    assert "plain_user_fn_xyz" in activation_names()


# --------------------------------------------------------------------------
# Activation object, out=, chunking
# --------------------------------------------------------------------------

def test_activation_object():
    act = get_act("leaky_ReLU", alpha=0.2)
    assert isinstance(act, Activation)
    assert repr(act) == "Activation(leaky_ReLU, alpha=0.2)"
    assert repr(get_act("sigmoid")) == "Activation(sigmoid)"
    assert act.forward.__func__ is Activation.__call__
    with pytest.raises(AttributeError):
        act.name = "x"
    p = act.params
    p["alpha"] = 5
    assert act.params == {"alpha": 0.2}
    assert act == get_act("LeakyReLU", alpha=0.2) and hash(act) == hash(get_act("leaky_relu", alpha=0.2))
    assert pickle.loads(pickle.dumps(act)) == act


@pytest.mark.parametrize("name", activation_names())
def test_out_in_place(name):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 5)) * 4
    act = get_act(name)
    expected = act(x)
    out = np.empty_like(x)
    assert act(x, out=out) is out
    np.testing.assert_array_equal(out, expected)
    y = x.copy()
    assert act(y, out=y) is y
    np.testing.assert_array_equal(y, expected)
    # a strided view written in place
    z = np.zeros((7, 10))
    z[:, ::2] = x
    view = z[:, ::2]
    act(view, out=view)
    np.testing.assert_array_equal(z[:, ::2], expected)
    with pytest.raises((TypeError, ValueError)):
        act(x, out=np.empty((7, 5), np.float32))
    with pytest.raises(ValueError):
        act(x, out=np.empty((5, 7)))


@pytest.mark.parametrize("name,params", [(n, p) for n in activation_names()
                                         for p in PARAM_SETS.get(n, [{}])[-1:]])
def test_chunked_and_threaded_results_are_identical(name, params, monkeypatch):
    rng = np.random.default_rng(5)
    act = get_act(name, **params)
    for dtype in DTYPES:
        x = (rng.standard_normal((301, 13)) * 6).astype(dtype)
        x[5, 3] = -60.0
        x[7, 1] = 0.0
        x[9, 2] = np.nan
        whole = act(x)
        monkeypatch.setattr(A, "_PARALLEL_MIN", 16)
        monkeypatch.setattr(A, "_CHUNK", 37)
        try:
            for k in (1, 2, 3):
                A.set_num_threads(k)
                np.testing.assert_array_equal(act(x), whole)
                y = x.copy()
                act(y, out=y)
                np.testing.assert_array_equal(y, whole)
        finally:
            A.set_num_threads(max(1, __import__("os").cpu_count() or 1))
            monkeypatch.undo()


def test_set_num_threads_validation():
    with pytest.raises(ValueError):
        A.set_num_threads(0)
    with pytest.raises(ValueError):
        A.set_num_threads(1.5)


def test_public_functions_are_plain():
    x = np.array([-1.0, 2.0], dtype=np.float32)
    y = A.leaky_ReLU(x, alpha=0.5)
    assert y.dtype == np.float32 and y.tolist() == [-0.5, 2.0]
    np.testing.assert_array_equal(A.sigmoid(x), get_act("sigmoid")(x))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_softsign_monotone_where_one_plus_x_rounds(dtype):
    p = np.finfo(dtype).nmant + 1
    x = np.concatenate([np.arange(-64, 64) * 2.0 + 2.0 ** p, [1e30, np.inf]]).astype(dtype)
    y = get_act("softsign")(x)
    assert (np.diff(y) >= 0).all()
    assert y[-1] == 1.0


@pytest.mark.parametrize("name", ["tanh", "tanh_shrink", "tanhExp"])
def test_float64_tanh_monotone_and_accurate_across_branch_switch(name, either_path):
    # the fallback tanh switches between a rational form and the exponential
    # form at |x| = 0.625
    x = np.concatenate([np.linspace(0.62, 0.63, 20001), np.linspace(-0.63, -0.62, 20001)])
    x = np.sort(x)
    y = get_act(name)(x)
    if name == "tanh":
        assert (np.diff(y) >= 0).all()
    ref = {"tanh": lambda v: _tanh(v), "tanh_shrink": _tanh_shrink_ref,
           "tanhExp": lambda v: v * _tanh(mp.exp(v))}[name]
    sample = x[::400]
    got = get_act(name)(sample)
    _tolerance_check(name, sample, got, [ref(mp.mpf(float(v))) for v in sample], np.float64)


# These activations have compiled kernels (layers.compiled, numba) beside
# their NumPy ones; tests that take `kernel_path` run once on each path
# available here.
COMPILED = [("GELU", {}), ("GELU", {"approximate": "tanh"}), ("ELU", {}), ("ELU", {"alpha": 0.3}),
            ("SELU", {}), ("CELU", {}), ("CELU", {"alpha": 2.5}), ("sigmoid", {}),
            ("softplus", {}), ("log_sigmoid", {}), ("tanh", {}), ("SiLU", {}),
            ("Swish", {"beta": 0.3}), ("Swish", {"beta": -1.7}), ("Swish", {"beta": 4.0}),
            ("tanh_shrink", {}), ("softmax", {}), ("softmin", {}), ("log_softmax", {}),
            ("identity", {}), ("ReLU", {}), ("ReLU6", {}), ("hard_tanh", {}),
            ("leaky_ReLU", {"alpha": 0.3}), ("leaky_ReLU", {"alpha": 2.5}), ("PReLU", {}),
            ("RReLU", {}), ("threshold", {}), ("threshold", {"threshold": 0.7, "value": -2.5}),
            ("hard_shrink", {}), ("soft_shrink", {"lambda_": 1.3}), ("step", {}), ("softsign", {}),
            ("hard_swish", {}), ("hard_sigmoid", {}), ("hard_sigmoid", {"slope": 0.3, "offset": 0.25})]


@pytest.fixture(params=["numpy", "compiled"])
def kernel_path(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(A, "_COMPILED", None)
    else:
        pytest.importorskip("numba")
        monkeypatch.setattr(A, "_COMPILED", ...)   # look it up afresh
        monkeypatch.delenv(A.COMPILED_ENV, raising=False)
        assert A.compiled_kernels() is not None
    return request.param


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,params", COMPILED, ids=[f"{n}{p}" for n, p in COMPILED])
def test_compiled_activations_against_mpmath_on_each_path(name, params, dtype, kernel_path):
    _check_against_mpmath(name, params, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_infinities_and_nan(approximate, dtype, kernel_path):
    # the limits: GELU(+inf) = +inf, GELU(-inf) = 0 (x Phi(x) -> 0), even
    # where the formula meets inf * 0 or inf / inf; NaN among them changes nothing
    x = np.array([np.inf, -np.inf, np.nan, -25.0, -20.5, 3.0], dtype=dtype)
    y = get_act("GELU", approximate=approximate)(x)
    alone = get_act("GELU", approximate=approximate)(x[[0, 1, 3, 4, 5]])
    assert y[0] == np.inf and y[1] == 0.0 and np.isnan(y[2])
    np.testing.assert_array_equal(y[[0, 1, 3, 4, 5]], alone)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,params", COMPILED, ids=[f"{n}{p}" for n, p in COMPILED])
def test_compiled_and_numpy_paths_agree(name, params, dtype, monkeypatch):
    pytest.importorskip("numba")
    x = np.concatenate([np.linspace(-40, 30, 700001), -np.geomspace(1e-300, 40, 20001),
                        np.geomspace(1e-300, 40, 20001), [np.inf, -np.inf]]).astype(dtype)
    act = get_act(name, **params)
    monkeypatch.setattr(A, "_COMPILED", None)
    slow = act(x).astype(np.float64)
    monkeypatch.setattr(A, "_COMPILED", ...)
    monkeypatch.delenv(A.COMPILED_ENV, raising=False)
    fast = act(x).astype(np.float64)
    fi = np.finfo(dtype)
    big = ~np.isfinite(slow)
    np.testing.assert_array_equal(fast[big], slow[big])
    # each path is within a few ulps of the true value (the mpmath tests)
    fast, slow = fast[~big], slow[~big]
    assert (np.abs(fast - slow) <= 8 * fi.eps * np.abs(slow) + 2 * fi.smallest_subnormal).all()
    # a strided view gives the same bytes as contiguous memory
    wide = np.stack([x, x], axis=1)
    np.testing.assert_array_equal(act(wide[:, 0]), act(x))


def _rowwise_cases(dtype):
    """Rows of varied spreads, ties, NaN and +-inf entries, 12 columns each."""
    rng = np.random.default_rng(23)
    big = float(np.finfo(dtype).max)
    special = [[-3e38, 3e38, 1.0], [0.0, -50.0, -700.0], [88.0, -1.3, 0.2], [1e4, -1e4, 0.0],
               [3.0, 3.0, 1.0], [-20.5, -20.5, -20.5], [12.3, -87.9, 40.1, 40.1 + 1e-6],
               [0.0, -87.5, -103.0, -104.5], [-100.0, -187.5, -190.1], [-big, big, 0.0],
               [np.nan, 1.0, 2.0], [np.inf, 1.0, 2.0], [-np.inf, 1.0, 2.0],
               [np.inf, -np.inf, 0.0], [-np.inf, -np.inf, -np.inf], [-np.inf, -np.inf, 3.0]]
    rows = [r + [-np.inf] * (12 - len(r)) for r in special]
    rows += [r + [r[0] - 0.5] * (12 - len(r)) for r in special]
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.array(rows, dtype=np.float64).astype(dtype)
    scales = np.repeat([1e-3, 1.0, 10.0, 100.0, 1e3, 1e5], 40)[:, None]
    noise = (rng.standard_normal((scales.size, 12)) * scales).astype(dtype)
    return np.concatenate([x, noise, noise + dtype(1e4)])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(ROWWISE))
def test_compiled_and_numpy_rowwise_paths_agree(name, dtype, monkeypatch):
    pytest.importorskip("numba")
    x = _rowwise_cases(dtype)
    act = get_act(name)
    monkeypatch.setattr(A, "_COMPILED", None)
    with np.errstate(all="raise"):
        slow = act(x).astype(np.float64)
    monkeypatch.setattr(A, "_COMPILED", ...)
    monkeypatch.delenv(A.COMPILED_ENV, raising=False)
    with np.errstate(all="raise"):
        got = act(x)
    fast = got.astype(np.float64)
    fi = np.finfo(dtype)
    big = ~np.isfinite(slow)
    np.testing.assert_array_equal(fast[big], slow[big])     # NaN rows, -inf entries
    fast, slow = fast[~big], slow[~big]
    assert (np.abs(fast - slow) <= 8 * fi.eps * np.abs(slow) + 2 * fi.smallest_subnormal).all()
    # strided, in-place and partially overlapping calls give the bytes of contiguous input
    wide = np.repeat(x, 2, axis=1)
    np.testing.assert_array_equal(act(wide[:, ::2]), got)
    y = x.copy()
    act(y, out=y)
    np.testing.assert_array_equal(y, got)
    buf = np.concatenate([x.ravel(), x.ravel()[:12]])
    shifted = buf[12:].reshape(x.shape)
    act(buf[:x.size].reshape(x.shape), out=shifted)
    np.testing.assert_array_equal(shifted, got)


def test_compiled_kernels_switch(monkeypatch):
    monkeypatch.setattr(A, "_COMPILED", ...)
    monkeypatch.setenv(A.COMPILED_ENV, "0")
    assert A.compiled_kernels() is None
    # looked up once: the answer stands until the process ends
    monkeypatch.delenv(A.COMPILED_ENV)
    assert A.compiled_kernels() is None


def test_float32_exact_gelu_dense_against_float64(kernel_path):
    # the float32 path has its own erfc approximation; check it densely
    x = np.concatenate([np.linspace(-16, 16, 400001), -np.geomspace(1e-30, 16, 20001),
                        np.geomspace(1e-30, 16, 20001)]).astype(np.float32)
    got = get_act("GELU")(x).astype(np.float64)
    ref = get_act("GELU")(x.astype(np.float64))
    fi = np.finfo(np.float32)
    assert (np.abs(got - ref) <= 8 * fi.eps * np.abs(ref) + 2 * fi.smallest_subnormal).all()


def test_float32_gelu_tanh_dense_against_float64(kernel_path):
    # float32 approximate='tanh' has its own path (float64 exponent, one float32 exp)
    x = np.concatenate([np.linspace(-16, 16, 400001), -np.geomspace(1e-30, 16, 20001),
                        np.geomspace(1e-30, 16, 20001), [-3e38, 3e38]]).astype(np.float32)
    act = get_act("GELU", approximate="tanh")
    got = act(x).astype(np.float64)
    ref = act(x.astype(np.float64))
    fi = np.finfo(np.float32)
    assert (np.abs(got - ref) <= 8 * fi.eps * np.abs(ref) + 2 * fi.smallest_subnormal).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_tanh_shrink_accurate_across_branch_switch(dtype, either_path, kernel_path):
    # the rational form is used for |x| < 1.5, x - tanh(x) beyond
    lim = A._TS_LIMIT
    x = np.concatenate([np.linspace(lim - 0.01, lim + 0.01, 41), np.geomspace(1e-6, 3, 120)])
    x = np.concatenate([x, -x]).astype(dtype)
    got = get_act("tanh_shrink")(x)
    _tolerance_check("tanh_shrink", x, got, [_tanh_shrink_ref(mp.mpf(float(v))) for v in x], dtype)
    y = x.copy()
    get_act("tanh_shrink")(y, out=y)
    np.testing.assert_array_equal(y, got)


@pytest.mark.parametrize("name,params", [("ELU", {}), ("SELU", {}), ("CELU", {"alpha": 0.3}),
                                         ("CELU", {"alpha": 2.0})])
def test_float32_elu_family_dense_against_float64(name, params, either_path, kernel_path):
    # the fallback float32 expm1 blends exp(t) - 1 with a polynomial at t = -ln 2
    x = np.concatenate([np.linspace(-20, 1, 400001), np.linspace(-0.7, -0.68, 40001),
                        -np.geomspace(1e-45, 1, 40001)]).astype(np.float32)
    act = get_act(name, **params)
    got = act(x).astype(np.float64)
    ref = act(x.astype(np.float64))
    fi = np.finfo(np.float32)
    assert (np.abs(got - ref) <= 4 * fi.eps * np.abs(ref) + 2 * fi.smallest_subnormal).all()


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_float64_gelu_branch_switch_and_left_tail(approximate, kernel_path):
    # exact GELU switches from erf to erfc at |x| = sqrt(2); both forms carry
    # the Gaussian's exponent exactly down to underflow
    x = np.concatenate([np.linspace(1.40, 1.43, 31), np.linspace(-1.43, -1.40, 31),
                        np.linspace(-38.6, -20.0, 40), np.linspace(-27.0, -10.0, 30),
                        [27.9, 28.0, 28.1, 39.9, 40.0, 40.1]])
    got = get_act("GELU", approximate=approximate)(x)
    ref = _gelu_ref if approximate == "none" else _gelu_tanh_ref
    _tolerance_check("GELU", x, got, [ref(mp.mpf(float(v))) for v in x], np.float64)


@pytest.mark.parametrize("name", sorted(ROWWISE))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("cols", [5, 37, 101])
def test_rowwise_row_does_not_depend_on_its_neighbours(name, dtype, cols, kernel_path):
    # the compiled loops take rows in pairs (an odd last row with itself) and pad rows from 32
    # columns, or below 32 columns (the softmax family) in tiles of 128 rows, a short last tile
    # repeating its last row; a row's bits must not depend on its neighbours, its position in a
    # pair or tile, or the bias path
    rng = np.random.default_rng(cols)
    rows = 300
    x = (rng.standard_normal((rows, cols))
         * rng.choice([0.01, 1.0, 30.0, 300.0], size=(rows, 1))).astype(dtype)
    x[4, 0] = x[200, -1] = np.nan
    b = rng.standard_normal(cols).astype(dtype)
    act = get_act(name)
    whole = act(x)
    alone = [*range(0, rows, 7), 127, 128, 255, 256, rows - 1]
    assert whole[alone].tobytes() == np.concatenate([act(x[i:i + 1]) for i in alone]).tobytes()
    assert whole[1:].tobytes() == act(x[1:]).tobytes()
    assert whole[::-1].tobytes() == act(x[::-1].copy()).tobytes()
    assert act(x, bias=b).tobytes() == act((x + b).astype(dtype)).tobytes()
    nan_rows = np.isnan(whole).all(axis=1)
    assert nan_rows[[4, 200]].all() and not np.isnan(whole[~nan_rows]).any() and nan_rows.sum() == 2


@pytest.mark.parametrize("name", sorted(ROWWISE))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_rowwise_overflowing_row_among_normal_rows(name, dtype, monkeypatch):
    # a row whose differences overflow sends its chunk down the safe path;
    # the other rows must be unaffected and the result chunking-independent
    rng = np.random.default_rng(11)
    big = float(np.finfo(dtype).max) * 0.9
    x = (rng.standard_normal((40, 6)) * 5).astype(dtype)
    x[17] = [-big, big, 1.0, -2.0, 0.5, big]
    act = get_act(name)
    whole = act(x)
    for i in range(x.shape[0]):
        np.testing.assert_array_equal(act(x[i:i + 1]), whole[i:i + 1])
    monkeypatch.setattr(A, "_PARALLEL_MIN", 16)
    monkeypatch.setattr(A, "_CHUNK", 25)
    np.testing.assert_array_equal(act(x), whole)
    ref = _row_ref(name, [mp.mpf(float(v)) for v in x[17]])
    _tolerance_check(name, x[17], whole[17], ref, dtype)


# --------------------------------------------------------------------------
# Native-ufunc dispatch
# --------------------------------------------------------------------------

def test_native_simd_table_shape():
    table = A._native_simd_loops()
    assert set(table) == {("tanh", "d"), ("expm1", "f"), ("log1p", "f"), ("log1p", "d")}
    assert all(isinstance(v, bool) for v in table.values())
    assert A._native("tanh", np.dtype(np.float32)) is False  # not in the table


def test_native_simd_table_without_introspection(monkeypatch):
    # NumPy < 2.0 has no numpy.lib.introspect: everything counts as scalar
    introspect = pytest.importorskip("numpy.lib.introspect")

    def boom(*args, **kwargs):
        raise AttributeError("opt_func_info")

    monkeypatch.setattr(introspect, "opt_func_info", boom)
    assert not any(A._native_simd_loops().values())


def test_native_simd_table_reads_current_target(monkeypatch):
    introspect = pytest.importorskip("numpy.lib.introspect")
    info = {"tanh": {"dd": {"current": "X86_V4", "available": "X86_V4 baseline(X86_V2)"}},
            "expm1": {"ff": {"current": "baseline(X86_V2)", "available": "baseline(X86_V2)"}}}
    monkeypatch.setattr(introspect, "opt_func_info", lambda **kw: info)
    table = A._native_simd_loops()
    assert table[("tanh", "d")] and not table[("expm1", "f")] and not table[("log1p", "d")]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(DISPATCHED))
def test_dispatched_kernels_consult_the_table(name, dtype, monkeypatch):
    monkeypatch.setattr(A, "_COMPILED", None)   # the NumPy kernels' dispatch
    x = np.linspace(-30, 30, 2001).astype(dtype)
    native = get_act(name)(x)
    asked = []

    def scalar_everywhere(ufunc, dt):
        asked.append((ufunc, dt.char))
        return False

    monkeypatch.setattr(A, "_native", scalar_everywhere)
    composite = get_act(name)(x)
    expected = {"tanh": "tanh", "tanh_shrink": "tanh", "tanhExp": "tanh", "softplus": "log1p",
                "log_sigmoid": "log1p"}.get(name, "expm1")
    if (expected, np.dtype(dtype).char) in A._NATIVE_SIMD:
        assert (expected, np.dtype(dtype).char) in asked
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(composite, native, rtol=8 * eps, atol=2 * np.finfo(dtype).tiny)


def test_fallback_expm1_polynomial_runs(monkeypatch, fallback):
    calls = []
    real = A._horner_into
    monkeypatch.setattr(A, "_horner_into", lambda *a: calls.append(1) or real(*a))
    get_act("ELU")(np.linspace(-3, 3, 11, dtype=np.float32))
    assert calls


# --------------------------------------------------------------------------
# In-network blocks: scratch reuse and block-versus-row results
# --------------------------------------------------------------------------

def test_scratch_cap_matches_layer_blocks():
    from layers.blocks import BLOCK_ELEMENTS
    assert A._SCRATCH_MAX == BLOCK_ELEMENTS


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_scratch_reused_up_to_the_cap(dtype):
    block = np.empty((2048, A._SCRATCH_MAX // 2048), dtype)
    assert np.shares_memory(A._scratch(block, 0), A._scratch(block[:7], 0))
    assert A._zeros(block) is not None and not A._zeros(block).any()
    big = np.empty(A._SCRATCH_MAX + 1, dtype)
    assert not np.shares_memory(A._scratch(big, 0), A._scratch(block, 0))
    assert A._zeros(big) is None


@pytest.mark.parametrize("name,params", ALL_CASES)
def test_layer_block_matches_rows_bit_for_bit(name, params):
    # a (2048, 100) block runs inline on scratch beyond a chunk's size
    rng = np.random.default_rng(11)
    act = get_act(name, **params)
    rows = range(0, 2048, 97)
    for dtype in DTYPES:
        x = (rng.standard_normal((2048, 100)) * 4).astype(dtype)
        x[0, :4] = [-90.0, 0.0, np.nan, 800.0]
        y = x.copy()
        act(y, out=y)
        np.testing.assert_array_equal(act(x), y)
        for i in rows:
            np.testing.assert_array_equal(act(x[i]), y[i])


_HS_PARAMS = [(0.2, 0.5), (1 / 6, 0.5), (0.3, 0.25), (-0.3, 0.5), (0.7, -2.0),
              (123.456, 0.77), (0.2, 1e-30), (0.25, 0.5), (0.2, 0.0)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("slope,offset", _HS_PARAMS)
def test_hard_sigmoid_exact_across_the_zero_crossing(slope, offset, dtype):
    # every representable x within 300 ulps of the crossing, plus a wider band
    from fractions import Fraction
    s, o = dtype(slope), dtype(offset)
    t = float(-Fraction(float(o)) / Fraction(float(s))) if s else 0.0
    c = np.array(t, dtype)
    steps = np.arange(-300, 301)
    x = np.concatenate([c + steps * np.spacing(c) if c else steps * 1e-3,
                        (t * (1 + np.linspace(-0.4, 0.4, 401))).astype(dtype)]).astype(dtype)
    got = get_act("hard_sigmoid", slope=slope, offset=offset)(x)
    eps = Fraction(float(np.finfo(dtype).eps))
    for xi, gi in zip(x.tolist(), got.tolist()):
        v = min(max(Fraction(float(s)) * Fraction(xi) + Fraction(float(o)), Fraction(0)),
                Fraction(1))
        assert abs(Fraction(gi) - v) <= 2 * eps * v, (xi, gi, float(v))


def test_hard_sigmoid_crossing_constants():
    f32 = np.dtype(np.float32)
    assert A._crossing(0.25, 0.5, f32) == (0.0, 0.5)      # exact product
    assert A._crossing(0.2, 0.0, f32) == (0.0, 0.0)       # no addition
    assert A._crossing(0.0, 0.5, f32) == (0.0, 0.5)
    x0, c0 = A._crossing(float(np.float32(0.2)), 0.5, f32)
    assert np.float32(x0) == x0 and abs(c0) <= 0.2 * abs(np.spacing(np.float32(x0)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bent_identity_follows_x_to_infinity(dtype):
    # (sqrt(x^2 + 1) - 1)/2 + x -> +inf as x -> +inf and -inf as x -> -inf; the naive
    # evaluation meets inf/inf or inf - inf there.
    x = np.array([np.inf, -np.inf, np.nan], dtype=dtype)
    y = get_act("bent_identity")(x)
    assert y[0] == np.inf and y[1] == -np.inf and np.isnan(y[2])


def test_allow_compiled_switches_and_restores(monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.delenv(A.COMPILED_ENV, raising=False)
    monkeypatch.setattr(A, "_COMPILED", ...)
    with A.allow_compiled(False):
        assert A.compiled_kernels() is None
        with A.allow_compiled(True):
            assert A.compiled_kernels() is not None
        assert A.compiled_kernels() is None
    assert A._COMPILED is ...          # as before: looked up on the next call
    assert A.compiled_kernels() is not None


def test_first_threaded_call_loads_the_compiled_kernels_once_for_all_chunks():
    # a fresh process whose first activation call runs chunks on two threads: a chunk
    # must not take the NumPy kernels while another thread is still loading numba
    pytest.importorskip("numba")
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "import layers.activations as A\n"
        "x = np.random.default_rng(0).standard_normal((8192, 100)) * 0.3\n"
        "A.set_num_threads(2)\n"
        "first = A.get_act('tanh')(x)\n"
        "print(int((first != A.get_act('tanh')(x)).sum()))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != A.COMPILED_ENV}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"


def _bias_case(dtype, rows=37, cols=13):
    """Inputs of every scale with zeros, infinities and NaN, and a bias."""
    rng = np.random.default_rng(31)
    x = rng.standard_normal((rows, cols)) * np.exp(rng.uniform(-6, 6, (rows, cols)))
    x[0, :6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 3.0]
    b = rng.standard_normal(cols) * 2.0
    b[1] = -3.0                          # x + b = 0 in row 0
    return x.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,params", ALL_CASES, ids=[f"{n}{p}" for n, p in ALL_CASES])
def test_bias_gives_the_activation_of_the_rounded_sum_on_each_path(name, params, dtype,
                                                                      kernel_path):
    # act(x, bias=b) is act(x + b) with x + b rounded to the dtype, bit for bit, whether
    # a compiled loop adds the bias or it is added first; in place, strided, 1-D and in
    # chunks on the thread pool alike
    act = get_act(name, **params)
    x, b = _bias_case(dtype)
    with np.errstate(all="ignore"):
        want = act(x + b)
        np.testing.assert_array_equal(act(x, bias=b), want)
        y = x.copy()
        assert act(y, out=y, bias=b) is y
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(act(np.repeat(x, 2, axis=1)[:, ::2], bias=b), want)
        np.testing.assert_array_equal(act(x[3], bias=b), act(x[3] + b))
        big, bb = _bias_case(dtype, rows=2600, cols=101)     # over the pool's threshold
        np.testing.assert_array_equal(act(big, bias=bb), act(big + bb))


def test_bias_of_the_wrong_shape_is_refused():
    act = get_act("ReLU")
    with pytest.raises(ValueError, match=r"bias has shape \(3,\), expected \(4,\)"):
        act(np.ones((2, 4)), bias=np.ones(3))
    with pytest.raises(ValueError, match="bias has shape"):
        act(np.float64(1.0), bias=np.ones(1))


def test_bias_reaches_user_activations():
    name = "bias_probe_square"
    register_activation(lambda x: x * x, name=name)
    np.testing.assert_array_equal(get_act(name)(np.array([[1.0, 2.0]]), bias=np.array([0.5, -3.0])),
                                  [[2.25, 1.0]])

