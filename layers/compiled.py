"""Compiled activation kernels (numba), used when the ``fast`` extra is installed.

In NumPy every elementwise step is a pass over memory: exact GELU takes some
30 of them, and on CPUs without AVX-512 NumPy's expm1, log1p and float64
tanh are scalar loops.  A compiled loop makes one pass with every step in
registers.  The loops follow the NumPy kernels in ``layers.activations``
step for step and take their constants from there, so both paths compute
the same functions to the same accuracy (a few ulps; the tests run both
against mpmath).  On float32 input the loops that need exp (sigmoid,
softplus, log_sigmoid, SiLU/Swish, the ELU family, exact GELU, tanh_shrink
and the softmax family's exponentials) run in float32 lanes, eight to
float64's four; tanh-GELU works in float64 and rounds once on the store.

Three details make the loops fast and keep them exact:

* ``_exp``, ``_exp32``, ``_expm1_nonpos``, ``_log`` and ``_log1p_unit`` are
  polynomials with the power of two assembled from (or read off) the bits,
  so LLVM vectorises the whole loop (a call into libm would not be);
* exact products use a fused multiply-add (``_fma``, the ``llvm.fma``
  intrinsic), which stays exact under the ``contract`` flag that lets LLVM
  fuse the polynomial steps;
* sums and extrema over a row use ``_add_reassoc``, ``_maximum`` and
  ``_minimum``, which LLVM may reorder into per-lane partial results.

Every kernel is a loop ``name(x, b, out, *params)``: over flat arrays for
the elementwise ones (a scalar function inlined into the loop), over
(rows, cols) arrays for the row-wise ones, with a layer's bias ``b`` (empty
for none) added to x first, and x and out either the same memory or apart.
``activations._run_compiled`` calls them all.  This module imports numba at
import time; ``layers.activations`` imports it only when one of these
activations is first evaluated, and only if numba is installed (see
``activations.compiled_kernels``).
"""

from __future__ import annotations

import math
import warnings

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from layers.activations import (_ERFC32_G, _ERFC_H, _GT64_C1, _GT64_C2, _GT64_K1, _GT64_K2,
                                _GT_A, _GT_K, _GRID7, _SQRT2, _TS_A32, _TS_A64, _TS_B32, _TS_B64,
                                _TS_LIMIT)


def cached_njit(**options):
    """``numba.njit(cache=True, **options)``, or without the cache where numba has nowhere to
    write one: a read-only install with no writable home directory and no ``NUMBA_CACHE_DIR``.
    numba refuses to decorate a caching function there (RuntimeError at import); the kernels
    then compile in every process that uses them, about a second each, and say so once."""
    def decorate(fn):
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError as err:
            if "cannot cache" not in str(err):
                raise
        global _uncached_warned
        if not _uncached_warned:
            _uncached_warned = True
            warnings.warn("numba finds no writable cache directory for the compiled kernels, so they "
                          "compile in every process (about a second each); set NUMBA_CACHE_DIR to a "
                          "writable directory to keep them", RuntimeWarning, stacklevel=2)
        return numba.njit(cache=False, **options)(fn)
    return decorate


_uncached_warned = False

# nogil: the activation thread pool runs chunks concurrently; cache: compile
# once per machine (about a second per kernel), not once per process.
_jit = cached_njit(nogil=True, error_model="numpy", boundscheck=False, fastmath={"contract"})
_inline = numba.njit(inline="always", error_model="numpy", fastmath={"contract"})


def _float_ir(t) -> tuple:
    """(LLVM float type, LLVM int type of the same width, suffix) for float32/float64."""
    if t == types.float32:
        return ir.FloatType(), ir.IntType(32), "f32"
    return ir.DoubleType(), ir.IntType(64), "f64"


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c with one rounding (exact products: fma(a, b, -a*b))."""
    if not (a == b == c and a in (types.float32, types.float64)):
        return None
    sig = a(a, a, a)

    def codegen(context, builder, signature, args):
        ft, _, suffix = _float_ir(a)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ft, [ft] * 3),
                                            "llvm.fma." + suffix)
        return builder.call(fn, args)
    return sig, codegen


@intrinsic
def _as_int(typingctx, v):
    """The bits of a float32/float64 as an int32/int64."""
    if v not in (types.float32, types.float64):
        return None
    sig = (types.int32 if v == types.float32 else types.int64)(v)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _float_ir(v)[1])
    return sig, codegen


@intrinsic
def _as_float(typingctx, v):
    """The float32/float64 with the given int32/int64 bits."""
    if v not in (types.int32, types.int64):
        return None
    sig = (types.float32 if v == types.int32 else types.float64)(v)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _float_ir(sig.return_type)[0])
    return sig, codegen


_INVLN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238        # 32 significant bits: k * _LN2_HI is exact
_LN2_LO = 1.9082149292705877e-10
_SHIFTER = 6755399441055744.0       # 1.5 * 2**52: adding it rounds to an integer
_SHIFTER_BITS = 0x4338000000000000


@_inline
def _exp(x):
    """exp(x) for float64 x, within about 1 ulp; 0 below -745.2, NaN for NaN.

    Callers keep x below 709.7.  exp(x) = 2**k * exp(r) with
    r = x - k ln2 (Cody-Waite, |r| <= ln2/2) and a degree-13 Taylor
    polynomial (truncation below 1e-17); 2**k is applied as two powers of
    two built from bits, so results down to the subnormals need no branch.
    """
    x = -746.0 if x < -746.0 else x      # NaN passes through
    kf = x * _INVLN2 + _SHIFTER
    k = _as_int(kf) - _SHIFTER_BITS      # round(x / ln2), as an integer
    kf -= _SHIFTER
    r = x - kf * _LN2_HI
    r -= kf * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    k1 = k >> 1
    return p * _as_float((k1 + 1023) << 52) * _as_float((k - k1 + 1023) << 52)


_F32 = np.float32
_INVLN2_32 = _F32(_INVLN2)
_LN2_HI32 = _F32(0.693359375)       # 9 significant bits: k * _LN2_HI32 is exact
_LN2_LO32 = _F32(-2.12194440e-4)
_SHIFTER32 = _F32(12582912.0)       # 1.5 * 2**23
_SHIFTER32_BITS = np.int32(0x4B400000)
_EXP32_TAYLOR = tuple(_F32(1.0 / f) for f in (1, 1, 2, 6, 24, 120, 720, 5040))
_EXP32_FLOOR = _F32(-170.0)            # exp of anything lower is 0 in float32


@_inline
def _exp32(y):
    """exp(y) for float32 y <= 88, within about 1.5 ulp, in float32
    arithmetic; 0 below -170, NaN for NaN.

    The same scheme as ``_exp`` with a degree-7 polynomial (truncation
    5.6e-9); two power-of-two factors keep subnormal results to one rounding.
    """
    y = _EXP32_FLOOR if y < _EXP32_FLOOR else y    # NaN passes through
    kf = y * _INVLN2_32 + _SHIFTER32
    k = _as_int(kf) - _SHIFTER32_BITS
    kf -= _SHIFTER32
    r = y - kf * _LN2_HI32
    r -= kf * _LN2_LO32
    p = _horner_step(_F32(0.0), _EXP32_TAYLOR, r)
    k1 = k >> 1
    # numba widens int32 arithmetic to int64: narrow back before the bitcast
    return (p * _as_float(np.int32((k1 + 127) << 23))
            * _as_float(np.int32((k - k1 + 127) << 23)))


@_inline
def _horner_step(p, coef, t):
    """p * t**len(coef) + sum(coef[i] * t**i), by Horner's rule."""
    for i in range(len(coef) - 1, -1, -1):
        p = p * t + coef[i]
    return p


def _in_parts(coef: tuple, size: int = 8) -> tuple:
    """``coef`` cut into pieces of at most ``size``, highest powers first.

    LLVM fully unrolls a Horner loop over a short constant tuple, but leaves a
    23-term one as an inner loop, which stops the vectorisation of the loop
    around it; chained short loops unroll.
    """
    cuts = range(len(coef), 0, -size)
    return tuple(coef[max(0, c - size):c] for c in cuts)


_ERFC_H_PARTS = _in_parts(_ERFC_H)


@_inline
def _erfc_h(t):
    """The degree-22 polynomial ``_ERFC_H`` at t."""
    p = _horner_step(0.0, _ERFC_H_PARTS[0], t)
    p = _horner_step(p, _ERFC_H_PARTS[1], t)
    return _horner_step(p, _ERFC_H_PARTS[2], t)


# --------------------------------------------------------------------------
# Elementwise kernels: a scalar function and its loop
# --------------------------------------------------------------------------
#
# Each elementwise activation is a scalar ``_name(v, params)`` inlined into
# its loop ``name(x, b, out, *params)`` over flat arrays, with the layer's
# bias tiled to whole rows.  The piecewise-linear ones, which cost less than
# a pass over memory, add the bias in the same loop (``_apply_biased``), so
# that ``x @ w + b`` and the activation take one pass instead of two.  The
# others add it in a pass of its own (``_apply_after_bias``): fused, they
# were slower (exact GELU 2.7 ns per element against 2.2, sigmoid 1.4
# against 1.2 on a (2048, 100) float32 block), because in a loop nested in
# the loop over bias tiles LLVM reloads each polynomial constant in the
# vector body (an address and a broadcast) instead of keeping it, and in a
# flat loop over the whole block it does not.


@_inline
def _apply(f, x, out, params):
    """out[i] = f(x[i], params) over flat arrays; out is x itself or does not
    overlap it.  In place the loop reads and writes one view: LLVM then sees
    each load and store at one address and vectorises without its overlap
    check, which would fail."""
    if x.ctypes.data == out.ctypes.data:
        for i in range(out.size):
            out[i] = f(out[i], params)
    else:
        for i in range(x.size):
            out[i] = f(x[i], params)


@_inline
def _apply_biased(f, x, b, out, params):
    """out[i] = f(x[i] + b[i % b.size], params) over flat arrays, x + b
    rounded to x's dtype first, as when the bias is added before; f(x[i])
    if b is empty.  The caller tiles b to whole rows; x may be out."""
    n = x.size
    period = b.size
    if period == 0:
        _apply(f, x, out, params)
        return
    in_place = x.ctypes.data == out.ctypes.data
    for start in range(0, n, period):
        m = min(period, n - start)
        os = out[start:start + m]
        if in_place:
            # one view, as in _apply
            for i in range(m):
                os[i] = f(os[i] + b[i], params)
        else:
            xs = x[start:start + m]
            for i in range(m):
                os[i] = f(xs[i] + b[i], params)


@_inline
def _apply_after_bias(f, x, b, out, params):
    """``_apply_biased`` in two passes, for the functions of many constants:
    x + b into out, then f over out in place in one flat loop.  In a loop
    nested in the one over bias tiles, LLVM reloads each constant in the
    vector body; the flat loop keeps them (exact GELU: 1.87 against 1.98 ns
    per element for adding the bias into a scratch buffer first)."""
    if b.size == 0:
        _apply(f, x, out, params)
        return
    _apply_biased(_identity, x, b, out, ())
    _apply(f, out, out, params)


@_inline
def _identity(v, params):
    return v


@_jit
def identity(x, b, out):
    """x + b: the bias alone (identity activation)."""
    _apply_biased(_identity, x, b, out, ())


@_inline
def _clip(v, params):
    """min(max(v, lo), hi) with NaN passing through, as np.clip."""
    lo, hi = params
    c = lo if v < lo else v
    return hi if c > hi else c


@_jit
def clip(x, b, out, lo, hi):
    """ReLU (0, inf), ReLU6 (0, 6), hard_tanh (-1, 1) and threshold with
    value = threshold (threshold, inf); lo and hi in x's dtype."""
    _apply_biased(_clip, x, b, out, (lo, hi))


@_inline
def _leaky(v, params):
    alpha, = params
    return v if v > 0.0 else alpha * v


@_jit
def leaky(x, b, out, alpha):
    """x if x > 0 else alpha x: leaky_ReLU, PReLU and RReLU; alpha in x's dtype."""
    _apply_biased(_leaky, x, b, out, (alpha,))


@_inline
def _threshold(v, params):
    threshold, value = params
    return value if v <= threshold else v     # NaN stays NaN


@_jit
def threshold(x, b, out, threshold, value):
    """x if x > threshold else value; both in x's dtype."""
    _apply_biased(_threshold, x, b, out, (threshold, value))


@_inline
def _hard_shrink(v, params):
    lambda_, = params
    return v if abs(v) > lambda_ else v * 0.0     # x * 0, as the NumPy kernel: NaN stays NaN


@_jit
def hard_shrink(x, b, out, lambda_):
    """x if |x| > lambda_ else 0; lambda_ in x's dtype."""
    _apply_biased(_hard_shrink, x, b, out, (lambda_,))


@_inline
def _soft_shrink(v, params):
    lambda_, = params
    return v - _clip(v, (-lambda_, lambda_))


@_jit
def soft_shrink(x, b, out, lambda_):
    """x - clip(x, -lambda_, lambda_); lambda_ in x's dtype."""
    _apply_biased(_soft_shrink, x, b, out, (lambda_,))


@_inline
def _step(v, params):
    one, zero = params
    return (one if v > zero else zero) if v == v else v     # NaN stays NaN


@_jit
def step(x, b, out, one, zero):
    """1 if x > 0 else 0 (NaN stays NaN); one and zero in x's dtype."""
    _apply_biased(_step, x, b, out, (one, zero))


@_inline
def _softsign(v, params):
    limit, one = params
    c = _clip(v, (-limit, limit))
    return c / (one + abs(c))


@_jit
def softsign(x, b, out, limit, one):
    """x / (1 + |x|) with x clipped to +-limit (2**p), as the NumPy kernel."""
    _apply_biased(_softsign, x, b, out, (limit, one))


@_inline
def _hard_swish(v, params):
    three, six, zero = params
    return v * (_clip(v + three, (zero, six)) / six)


@_jit
def hard_swish(x, b, out, three, six, zero):
    """x * (clip(x + 3, 0, 6) / 6); the constants in x's dtype."""
    _apply_biased(_hard_swish, x, b, out, (three, six, zero))


@_inline
def _hard_sigmoid(v, params):
    slope, x0, c0, zero, one = params
    return _clip((v - x0) * slope + c0, (zero, one))


@_jit
def hard_sigmoid(x, b, out, slope, x0, c0, zero, one):
    """clip(slope (x - x0) + c0, 0, 1) (``activations.hard_sigmoid``; the
    multiply-add may be fused, which only lowers its rounding error)."""
    _apply_biased(_hard_sigmoid, x, b, out, (slope, x0, c0, zero, one))


@_inline
def _max0(v):
    # NaN propagates through the caller's other term
    return v if v > 0.0 else 0.0


@_inline
def _max0_32(v):
    return v if v > _F32(0.0) else _F32(0.0)


@_inline
def _clamp_abs(v, limit):
    # written so that NaN passes through (NaN > limit is false)
    a = abs(v)
    return limit if a > limit else a


@_inline
def _gelu_erf_f64(v, params):
    """Exact GELU, float64: ``_gelu_erf64_into`` with -x^2/2 carried by an FMA."""
    a = _clamp_abs(v, 39.5)
    a2 = a * a
    a2_lo = _fma(a, a, -a2)              # a^2 = a2 + a2_lo exactly
    wh = -0.5 * a2
    wl = -0.5 * a2_lo
    h = wh + wl
    lo = (wh - h) + wl                   # -x^2/2 = h + lo, |lo| <= ulp(h)/2
    t = (a - 3.0 * _SQRT2) / (a + 3.0 * _SQRT2)
    q = _erfc_h(t) / (a * (2.0 * _SQRT2) + 2.0)   # erfc(z) exp(z^2) / 2
    return _max0(v) - q * a * (1.0 + lo) * _exp(h)


@_jit
def gelu_erf_f64(x, b, out):
    _apply_after_bias(_gelu_erf_f64, x, b, out, ())


_ERFC32_G32 = tuple(_F32(c) for c in _ERFC32_G)


@_inline
def _gelu_erf_f32(v, params):
    """Exact GELU, float32: ``_gelu_erf32_into`` in float32 registers.

    x^2 = h + l exactly (an FMA gives l), and exp(-x^2/2) = exp(-h/2) (1 - l/2)
    to far below float32's rounding, so the left tail keeps its relative
    accuracy without float64 (measured: 2.4 eps; the NumPy kernel's 2.8).
    """
    a = _clamp_abs(v, _F32(15.0))
    h = a * a
    l = _fma(a, a, -h)
    e = _exp32(_F32(-0.5) * h) * (_F32(1.0) - _F32(0.5) * l)
    t = (a - _F32(2.0 * _SQRT2)) / (a + _F32(2.0 * _SQRT2))
    q = _horner_step(_F32(0.0), _ERFC32_G32, t) / (a * _F32(_SQRT2) + _F32(1.0))
    return _max0_32(v) - q * a * e


@_jit
def gelu_erf_f32(x, b, out):
    _apply_after_bias(_gelu_erf_f32, x, b, out, ())


@_inline
def _gelu_tanh_f32(v, params):
    """GELU approximate='tanh', float32 input: ``_gelu_tanh32_into`` in registers."""
    a = np.float64(v)
    a = -28.0 if a < -28.0 else a        # below, the result is -0 (and -inf gives -0)
    w = a * (a * a * (-_GT_K * _GT_A) - _GT_K)          # -2u
    return a / (1.0 + _exp(w if w < 709.0 else 709.0))


@_jit
def gelu_tanh_f32(x, b, out):
    _apply_after_bias(_gelu_tanh_f32, x, b, out, ())


@_inline
def _gelu_tanh_f64(v, params):
    """GELU approximate='tanh', float64: ``_gelu_tanh64_into``'s exact -2u.

    With w = -2u = wh + wl: x / (1 + E) for w <= 0 and x E / (1 + E) for
    w > 0, where E = exp(-|w|) = h^2 and h = exp(-|w|/2) stays normal, so
    x E is formed as (x h) h without a premature underflow.
    """
    xc = -28.0 if v < -28.0 else v       # clamp; NaN passes through
    xc = 28.0 if xc > 28.0 else xc
    s = (xc + _GRID7) - _GRID7           # x rounded to a multiple of 2**-7
    d = xc - s
    s2 = s * s
    lo = ((xc + s) * xc + s2) * (_GT64_C1 + _GT64_C2) + (_GT64_K1 + _GT64_K2)
    lo = lo * d + (s2 * _GT64_C2 + _GT64_K2) * s
    hi = (s2 * _GT64_C1 + _GT64_K1) * s  # exact
    wh = hi + lo
    wl = (hi - wh) + lo
    neg = wh > 0.0
    wa = -wh if neg else wh              # -|w| = wa + la
    la = -wl if neg else wl
    hh = _exp(0.5 * wa) * (1.0 + 0.5 * la)
    num = (xc * hh) * hh if neg else v   # xc: below -28 the result is -0
    return num / (1.0 + hh * hh)


@_jit
def gelu_tanh_f64(x, b, out):
    _apply_after_bias(_gelu_tanh_f64, x, b, out, ())


# expm1(t) = sum of t^n / n! for n = 1..17 on [-ln 2, 0] (truncation below
# 6e-18 relative), by Horner's rule from the highest power
_EXPM1_TAYLOR = (0.0,) + tuple(1.0 / math.factorial(n) for n in range(1, 18))
_EXPM1_PARTS = _in_parts(_EXPM1_TAYLOR)
_LN2 = 0.6931471805599453


@_inline
def _expm1_nonpos(t):
    """expm1(t) for float64 t <= 0 (or NaN), within about 2 ulp.

    The Taylor polynomial on [-ln 2, 0], where exp(t) - 1 would cancel, and
    exp(t) - 1 below, where exp(t) <= 1/2 and the subtraction costs at most
    one rounding.
    """
    p = _horner_step(0.0, _EXPM1_PARTS[0], t)
    p = _horner_step(p, _EXPM1_PARTS[1], t)
    p = _horner_step(p, _EXPM1_PARTS[2], t)
    return p if t >= -_LN2 else _exp(t) - 1.0


@_inline
def _elu(x, params):
    """scale * max(x, 0) + alpha * expm1(min(x, 0) / divisor), in float64
    registers: ELU (divisor = scale = 1), SELU and CELU (divisor = alpha),
    as ``activations._elu_into``."""
    alpha, divisor, scale = params
    v = np.float64(x)
    t = 0.0 if v > 0.0 else v            # min(v, 0); NaN passes through
    return scale * _max0(v) + alpha * _expm1_nonpos(t / divisor)


@_jit
def elu(x, b, out, alpha, divisor, scale):
    _apply_after_bias(_elu, x, b, out, (alpha, divisor, scale))


# expm1 on [-ln 2, 0] for float32: Taylor to t^9 (truncation below 1e-8 relative)
_EXPM1_TAYLOR32 = tuple(_F32(c) for c in _EXPM1_TAYLOR[:10])
_LN2_32 = _F32(_LN2)


@_inline
def _expm1_nonpos32(t):
    """``_expm1_nonpos`` in float32 lanes (within about 2 ulps)."""
    p = _horner_step(_F32(0.0), _EXPM1_TAYLOR32, t)
    e = _exp32(t) - _F32(1.0)
    return p if t >= -_LN2_32 else e


@_inline
def _elu_f32(v, params):
    """``elu`` for float32 in float32 lanes; the parameters are float32."""
    alpha, divisor, scale = params
    t = _F32(0.0) if v > _F32(0.0) else v
    return scale * (v if v > _F32(0.0) else _F32(0.0)) + alpha * _expm1_nonpos32(t / divisor)


@_jit
def elu_f32(x, b, out, alpha, divisor, scale):
    _apply_after_bias(_elu_f32, x, b, out, (alpha, divisor, scale))


# log(m) = 2 atanh(f), f = (m - 1)/(m + 1), for m in [sqrt(1/2), sqrt(2)]:
# 2f * sum of f^(2j) / (2j + 1) for j = 0..10 (|f| <= 0.172, truncation below
# 1e-17 relative)
_ATANH_SERIES = tuple(1.0 / (2 * j + 1) for j in range(11))
_ATANH_PARTS = _in_parts(_ATANH_SERIES, 6)
_MANTISSA = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000


@_inline
def _log(s):
    """log(s) for a positive, normal, finite float64 s, within about 2 ulp.

    s = 2**k m with m in [sqrt(1/2), sqrt(2)) read from the bits, and the
    atanh series for log(m).
    """
    bits = _as_int(s)
    k = (bits >> 52) - 1023
    m = _as_float((bits & _MANTISSA) | _ONE_BITS)          # [1, 2)
    big = m > _SQRT2
    m = 0.5 * m if big else m
    kf = np.float64(k + 1 if big else k)
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    p = _horner_step(0.0, _ATANH_PARTS[0], f2)
    p = _horner_step(p, _ATANH_PARTS[1], f2)
    return kf * _LN2_HI + (2.0 * f * p + kf * _LN2_LO)


@_inline
def _log1p_unit(y):
    """log1p(y) for float64 0 <= y <= 1: log(u) plus the rounding error of
    u = 1 + y, carried as (y - (u - 1)) / u."""
    u = 1.0 + y
    return _log(u) + (y - (u - 1.0)) / u


@_inline
def _sigmoid(x, params):
    """1 / (1 + exp(-x)) as (1 or e) / (1 + e), e = exp(-|x|): no overflow,
    and relative accuracy in both tails (``activations._sigmoid_into``)."""
    v = np.float64(x)
    e = _exp(-abs(v))
    return (e if v < 0.0 else 1.0) / (1.0 + e)


@_jit
def sigmoid(x, b, out):
    _apply_after_bias(_sigmoid, x, b, out, ())


@_inline
def _sigmoid_f32(v, params):
    """``sigmoid`` for float32 in float32 lanes with ``_exp32`` (eight lanes
    to four; within 2.5 ulps)."""
    e = _exp32(-abs(v))
    return (e if v < _F32(0.0) else _F32(1.0)) / (_F32(1.0) + e)


@_jit
def sigmoid_f32(x, b, out):
    _apply_after_bias(_sigmoid_f32, x, b, out, ())


@_inline
def _softplus(x, params):
    """sign = 1: softplus, max(x, 0) + log1p(exp(-|x|)); sign = -1:
    log_sigmoid, min(x, 0) - log1p(exp(-|x|))."""
    sign, = params
    v = np.float64(x)
    edge = (v if v > 0.0 else 0.0) if sign > 0.0 else (0.0 if v > 0.0 else v)
    return edge + sign * _log1p_unit(_exp(-abs(v)))


@_jit
def softplus(x, b, out, sign):
    _apply_after_bias(_softplus, x, b, out, (sign,))


# log1p(y) = 2 atanh(f), f = y / (2 + y) in [0, 1/3] for y in [0, 1]:
# 2f * sum of f^(2j) / (2j + 1) for j = 0..7 (truncation below 2e-9 relative)
_ATANH_SERIES32 = tuple(_F32(1.0 / (2 * j + 1)) for j in range(8))


@_inline
def _log1p_unit32(y):
    """log1p(y) for float32 0 <= y <= 1 in float32 lanes, relative accuracy
    down to the subnormals (y itself for tiny y): no 1 + y is formed."""
    f = y / (_F32(2.0) + y)
    return _F32(2.0) * f * _horner_step(_F32(0.0), _ATANH_SERIES32, f * f)


@_inline
def _softplus_f32(v, params):
    """``_softplus`` for float32 in float32 lanes with ``_exp32`` and
    ``_log1p_unit32``; sign is a float32."""
    sign, = params
    zero = _F32(0.0)
    edge = (v if v > zero else zero) if sign > zero else (zero if v > zero else v)
    return edge + sign * _log1p_unit32(_exp32(-abs(v)))


@_jit
def softplus_f32(x, b, out, sign):
    _apply_after_bias(_softplus_f32, x, b, out, (sign,))


_BIG = float(np.finfo(np.float64).max)


@_inline
def _swish(x, params):
    """x * sigmoid(beta x) (``activations._swish_into``), beta != 0.

    p = beta x is carried with its rounding error d (an FMA), and with
    h = exp(-|p + d| / 2) = exp(-|p|/2) (1 -+ d/2) the result is
    x / (1 + h^2) for p >= 0 and (x h) h / (1 + h^2) for p < 0, where x h h
    would lose digits to a subnormal h^2.
    """
    beta, = params
    v = np.float64(x)
    p = beta * v
    d = _fma(beta, v, -p)
    d = d if abs(d) < abs(p) else 0.0    # not finite where p overflows
    neg = p < 0.0
    h = _exp(-0.5 * abs(p)) * (1.0 + 0.5 * (d if neg else -d))
    vc = _clip(v, (-_BIG, _BIG))        # (+-inf * 0) * 0 -> 0
    num = (vc * h) * h if neg else v
    return num / (1.0 + h * h)


@_jit
def swish(x, b, out, beta):
    _apply_after_bias(_swish, x, b, out, (beta,))


_BIG32 = _F32(np.finfo(np.float32).max)


@_inline
def _swish_f32(v, params):
    """``swish`` for float32 in float32 lanes with ``_exp32`` (within about
    4 ulps); beta is a float32."""
    beta, = params
    p = beta * v
    d = _fma(beta, v, -p)
    d = d if abs(d) < abs(p) else _F32(0.0)
    neg = p < _F32(0.0)
    h = _exp32(_F32(-0.5) * abs(p)) * (_F32(1.0) + _F32(0.5) * (d if neg else -d))
    vc = _clip(v, (-_BIG32, _BIG32))
    num = (vc * h) * h if neg else v
    return num / (_F32(1.0) + h * h)


@_jit
def swish_f32(x, b, out, beta):
    _apply_after_bias(_swish_f32, x, b, out, (beta,))


@_inline
def _silu_f32(v, params):
    """``_swish_f32`` for beta = 1 (SiLU), where beta x = x is exact: the
    same result without the error term (0.8x the time)."""
    h = _exp32(_F32(-0.5) * abs(v))
    vc = _clip(v, (-_BIG32, _BIG32))
    num = (vc * h) * h if v < _F32(0.0) else v
    return num / (_F32(1.0) + h * h)


@_jit
def silu_f32(x, b, out):
    _apply_after_bias(_silu_f32, x, b, out, ())


@_inline
def _tanh(v):
    """tanh(v) = -t / (2 + t) with t = expm1(-2|v|), the sign of v restored."""
    t = _expm1_nonpos(-2.0 * abs(v))
    return math.copysign(-t / (2.0 + t), v)


@_inline
def _tanh_kernel(v, params):
    """tanh, for float64 (where NumPy's loop is slower than this on AVX2)."""
    return _tanh(v)


@_jit
def tanh(x, b, out):
    _apply_after_bias(_tanh_kernel, x, b, out, ())


@_inline
def _tanh_shrink(x, params):
    """x - tanh(x): for |x| < 1.5, where the subtraction cancels, the
    continued-fraction rational of ``activations.tanh_shrink`` (positive
    terms only); beyond, the subtraction."""
    v = np.float64(x)
    xc = _clip(v, (-_TS_LIMIT, _TS_LIMIT))
    z = xc * xc
    small = xc * z * _horner_step(0.0, _TS_A64, z) / _horner_step(0.0, _TS_B64, z)
    return small if abs(v) < _TS_LIMIT else v - _tanh(v)


@_jit
def tanh_shrink(x, b, out):
    _apply_after_bias(_tanh_shrink, x, b, out, ())


_TS_A32_32 = tuple(_F32(c) for c in _TS_A32)
_TS_B32_32 = tuple(_F32(c) for c in _TS_B32)
_TS_LIMIT32 = _F32(_TS_LIMIT)


@_inline
def _tanh_shrink_f32(v, params):
    """``_tanh_shrink`` for float32 in float32 lanes (within about 2 ulps).

    Beyond 1.5 it is written without the cancelling subtraction:
    |x| - tanh|x| = (|x| - 1) + 2e / (1 + e), e = exp(-2|x|), a sum of two
    non-negative terms of which the first is exact up to |x| = 2 (and at most
    half an ulp off beyond), the second at most a fifth of the result.
    """
    one = _F32(1.0)
    xc = _clip(v, (-_TS_LIMIT32, _TS_LIMIT32))
    z = xc * xc
    small = (xc * z * _horner_step(_F32(0.0), _TS_A32_32, z)
             / _horner_step(_F32(0.0), _TS_B32_32, z))
    a = abs(v)
    e = _exp32(_F32(-2.0) * a)           # 0 for |x| >= 85, and for infinite x
    big = math.copysign((a - one) + (e + e) / (one + e), v)
    return small if a < _TS_LIMIT32 else big


@_jit
def tanh_shrink_f32(x, b, out):
    _apply_after_bias(_tanh_shrink_f32, x, b, out, ())


# --------------------------------------------------------------------------
# Row-wise kernels: softmax, softmin, log_softmax on (rows, cols) arrays
# --------------------------------------------------------------------------

@intrinsic
def _add_reassoc(typingctx, a, b):
    """a + b marked reassociable: LLVM vectorises a sum reduction (into
    per-lane partial sums) only when it may reorder the additions."""
    if not (a == b and a in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], args[1], flags=("reassoc", "contract"))
    return a(a, b), codegen


def _minmax_intrinsic(op: str):
    """max (op "maximum") or min ("minimum") of two floats with NaN propagating
    (``llvm.maximum``/``llvm.minimum``): LLVM vectorises it as a reduction,
    unlike a compare-and-select, which it may not reorder around NaN."""
    def impl(typingctx, a, b):
        if not (a == b and a in (types.float32, types.float64)):
            return None

        def codegen(context, builder, signature, args):
            ft, _, suffix = _float_ir(a)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ft, [ft] * 2), f"llvm.{op}.{suffix}")
            return builder.call(fn, args)
        return a(a, b), codegen
    impl.__name__ = f"_{op}"
    return intrinsic(impl)


_maximum = _minmax_intrinsic("maximum")
_minimum = _minmax_intrinsic("minimum")


@_inline
def _two_diff(v, m, one):
    """(d, 1 + e) with d = fl(v - m) and e its rounding error (TwoSum), in
    the type of ``one``; the factor is 0 where d is infinite (v = -inf, or an
    overflowing difference), which makes e NaN and exp(d) 0."""
    d = v - m
    bb = d - v
    c = one + ((v - (d - bb)) + (-m - bb))
    return d, (c if c > 0.0 else one - one)


@_inline
def _shifted_exp(v, m):
    """exp(v - m) = exp(d) (1 + e) for float64 v <= m, m finite."""
    d, c = _two_diff(v, m, 1.0)
    return _exp(d) * c


@_inline
def _shifted_exp32(v, m):
    """The same for float32, in float32 lanes with ``_exp32`` (within 2
    ulps).  LLVM vectorises this loop only when it stores float32, so the
    caller's scratch row is float32."""
    d, c = _two_diff(v, m, _F32(1.0))
    return _exp32(d) * c


@_inline
def _nan_row(orow):
    for j in range(orow.size):
        orow[j] = np.nan


_ROW_PAD = 8


@_inline
def _padded_row(cols, dtype):
    """A scratch row for one row of ``cols`` values, filled with -inf, its
    length rounded up to a multiple of ``_ROW_PAD``.

    The two-row loops work on a copy of each row in it.  Their vector loops
    then end without scalar steps, which cost the exponentials' pass a third
    of its time on 100 float32 columns; the padding's -inf changes no
    maximum, and its exponentials are 0.  (Rows narrower than
    ``_TILE_BELOW`` go in tiles instead, where the padding's exponentials
    would cost more than the scalar steps they save.)  The length is written
    (cols + 7) // 8 * 8, a form from which LLVM sees the multiple of 8 (with
    -(-cols // 8) * 8 softmax took 1.8x as long).
    """
    return np.full((cols + _ROW_PAD - 1) // _ROW_PAD * _ROW_PAD, -np.inf, dtype)


@_inline
def _row_values(x, b, r, t, sign, p, q):
    """p[:cols] = sign (x[r] + b) and q[:cols] = sign (x[t] + b), the sums
    rounded to the dtype as when the bias is added first; sign x alone for an
    empty b."""
    xr = x[r]
    xt = x[t]
    if b.size == 0:
        for j in range(xr.size):
            p[j] = sign * xr[j]
            q[j] = sign * xt[j]
    else:
        for j in range(xr.size):
            p[j] = sign * (xr[j] + b[j])
            q[j] = sign * (xt[j] + b[j])


@_inline
def _pair_sums(e, g):
    """The sums of e and of g in float64, each in per-lane partial sums."""
    se = 0.0
    sg = 0.0
    for j in range(e.size):
        se = _add_reassoc(se, np.float64(e[j]))
        sg = _add_reassoc(sg, np.float64(g[j]))
    return se, sg


@_inline
def _nan_unbounded(m, n, orow, trow):
    """A row whose maximum is NaN or infinite becomes NaN (its exponentials
    are garbage), as on the NumPy path."""
    if not abs(m) <= _BIG:
        _nan_row(orow)
    if not abs(n) <= _BIG:
        _nan_row(trow)


@_inline
def _softmax_rows(shifted_exp, x, b, out, sign, p, q, e, g):
    """The loop of ``softmax_f64``/``softmax_f32``, two rows at a time: their
    values in the padded rows ``p`` and ``q``, their exponentials (by
    ``shifted_exp``) in ``e`` and ``g``, all in the dtype.

    Two independent rows in one loop body keep twice the work in flight: 0.83x
    the time of one row at a time on 100 float32 columns.  An odd last row
    pairs with itself, so every row takes the same code, whatever its
    neighbours: its result does not depend on where a chunk starts.
    """
    rows, cols = x.shape
    for r in range(0, rows, 2):
        t = min(r + 1, rows - 1)
        # the maxima written out here and in _log_softmax_rows: a helper returning the pair
        # (m, n) made float32 softmax 4-7 % slower
        _row_values(x, b, r, t, sign, p, q)
        m = p[0]
        n = q[0]
        for j in range(1, p.size):
            m = _maximum(m, p[j])
            n = _maximum(n, q[j])
        for j in range(p.size):
            e[j] = shifted_exp(p[j], m)
            g[j] = shifted_exp(q[j], n)
        se, sg = _pair_sums(e, g)
        inv_e = 1.0 / se
        inv_g = 1.0 / sg
        orow = out[r]
        trow = out[t]
        for j in range(cols):
            orow[j] = np.float64(e[j]) * inv_e
            trow[j] = np.float64(g[j]) * inv_g
        _nan_unbounded(m, n, orow, trow)


_TILE = 128         # rows per tile of the narrow-row loop
_TILE_BELOW = 32    # columns: narrower rows take the tiles


@_inline
def _load_tile(x, b, r0, sign, t, m):
    """t[:, k] = sign (x[r0 + k] + b) for the ``_TILE`` rows from r0, the
    last row repeated past the end, and m[k] = the maximum of t[:, k]."""
    rows, cols = x.shape
    for k in range(_TILE):
        xr = x[min(r0 + k, rows - 1)]
        if b.size == 0:
            for j in range(cols):
                t[j, k] = sign * xr[j]
        else:
            for j in range(cols):
                t[j, k] = sign * (xr[j] + b[j])
    t0 = t[0]
    for k in range(_TILE):
        m[k] = t0[k]
    for j in range(1, cols):
        tj = t[j]
        for k in range(_TILE):
            m[k] = _maximum(m[k], tj[k])


@_inline
def _softmax_tiles(shifted_exp, x, b, out, sign, t, m):
    """The loop of ``softmax_f64``/``softmax_f32`` for rows of fewer than
    ``_TILE_BELOW`` columns: ``_TILE`` rows at a time, transposed into the
    scratch ``t`` (cols, _TILE), so that the vector lanes run across rows;
    ``m`` (_TILE) takes their maxima.  Both are in the dtype.

    Along a narrow row a vector loop has too few steps to fill, and each
    row's maximum, exponentials, sum and quotient wait on each other; across
    rows every step is a vector operation on independent rows (4-31 columns:
    0.4-0.95x the time of the two-row loop).  Each row's sum is taken in
    column order.  A last tile short of rows repeats the last row, so every
    row takes the same code whatever its neighbours.
    """
    rows, cols = x.shape
    s = np.empty(_TILE)
    t0 = t[0]
    for r0 in range(0, rows, _TILE):
        _load_tile(x, b, r0, sign, t, m)
        for j in range(cols):
            tj = t[j]
            for k in range(_TILE):
                tj[k] = shifted_exp(tj[k], m[k])
        for k in range(_TILE):
            s[k] = np.float64(t0[k])
        for j in range(1, cols):
            tj = t[j]
            for k in range(_TILE):
                s[k] += np.float64(tj[k])
        for k in range(_TILE):
            s[k] = 1.0 / s[k]
        for k in range(min(_TILE, rows - r0)):
            orow = out[r0 + k]
            inv = s[k]
            for j in range(cols):
                orow[j] = np.float64(t[j, k]) * inv
            if not abs(m[k]) <= _BIG:
                _nan_row(orow)


@_inline
def _softmax(shifted_exp, x, b, out, sign, dtype):
    """``_softmax_tiles`` for rows of fewer than ``_TILE_BELOW`` columns, else
    ``_softmax_rows``, with their scratch in ``dtype``."""
    cols = x.shape[1]
    if cols < _TILE_BELOW:
        _softmax_tiles(shifted_exp, x, b, out, sign, np.empty((cols, _TILE), dtype), np.empty(_TILE, dtype))
    else:
        _softmax_rows(shifted_exp, x, b, out, sign, _padded_row(cols, dtype), _padded_row(cols, dtype),
                      _padded_row(cols, dtype), _padded_row(cols, dtype))


@_jit
def softmax_f64(x, b, out, neg):
    """exp(s x_i - m) / sum_j exp(s x_j - m) over each row of 2-D x, s = -1 if
    neg (softmin) else 1, m = max(s x), x - m carried exactly
    (``activations._softmax_exact``).  A row with a NaN or an infinite
    maximum becomes NaN, as on the NumPy path.  x may be out."""
    _softmax(_shifted_exp, x, b, out, -1.0 if neg else 1.0, np.float64)


@_jit
def softmax_f32(x, b, out, neg):
    """``softmax_f64`` for float32: exponentials in float32 lanes, sum and
    quotient in float64."""
    _softmax(_shifted_exp32, x, b, out, _F32(-1.0) if neg else _F32(1.0), np.float32)


@_inline
def _log1p_sum(s):
    """log1p(s) for s >= 0 in float64."""
    return _log1p_unit(s) if s <= 1.0 else _log(1.0 + s)


@_inline
def _log_softmax_rows(shifted_exp, zero, one, x, b, out, p, q, e, g):
    """The loop of ``log_softmax_f64``/``log_softmax_f32``, two rows at a time
    as ``_softmax_rows``: ``shifted_exp``, ``zero`` and ``one`` in the dtype
    of the padded rows ``p``, ``q`` (values) and ``e``, ``g`` (exponentials,
    0 at the maximal entries).

    Row i is (x_j - m) - log1p(s), s = sum(e) + ties - 1.  The differences
    x - m go to float64 rows first (for float32 nearly exact), and the last
    pass reads them, not x, so x may be out.
    """
    rows, cols = x.shape
    dp = np.empty(cols)
    dq = np.empty(cols)
    for r in range(0, rows, 2):
        t = min(r + 1, rows - 1)
        _row_values(x, b, r, t, one, p, q)
        m = p[0]
        n = q[0]
        for j in range(1, p.size):
            m = _maximum(m, p[j])
            n = _maximum(n, q[j])
        for j in range(p.size):
            ep = shifted_exp(p[j], m)
            eq = shifted_exp(q[j], n)
            e[j] = ep if p[j] < m else zero
            g[j] = eq if q[j] < n else zero
        m64 = np.float64(m)
        n64 = np.float64(n)
        ties_p = 0
        ties_q = 0
        for j in range(cols):
            dp[j] = np.float64(p[j]) - m64
            dq[j] = np.float64(q[j]) - n64
            ties_p += p[j] == m
            ties_q += q[j] == n
        sp, sq = _pair_sums(e, g)
        lse_p = _log1p_sum(sp + np.float64(ties_p - 1))
        lse_q = _log1p_sum(sq + np.float64(ties_q - 1))
        orow = out[r]
        trow = out[t]
        for j in range(cols):
            orow[j] = dp[j] - lse_p
            trow[j] = dq[j] - lse_q
        _nan_unbounded(m, n, orow, trow)


@_inline
def _log_softmax_tiles(shifted_exp, zero, one, x, b, out, t, m, e):
    """The loop of ``log_softmax_f64``/``log_softmax_f32`` for rows of fewer
    than ``_TILE_BELOW`` columns, in tiles as ``_softmax_tiles``: values in
    ``t``, exponentials (0 at the maximal entries) in ``e``, both (cols,
    _TILE), and maxima in ``m``, all in the dtype.  Each row's sum is taken
    in column order."""
    rows, cols = x.shape
    s = np.empty(_TILE)
    ties = np.empty(_TILE)
    for r0 in range(0, rows, _TILE):
        _load_tile(x, b, r0, one, t, m)
        for k in range(_TILE):
            s[k] = 0.0
            ties[k] = -1.0
        for j in range(cols):
            tj = t[j]
            ej = e[j]
            for k in range(_TILE):
                v = shifted_exp(tj[k], m[k])
                ej[k] = v if tj[k] < m[k] else zero
                s[k] += np.float64(ej[k])
                ties[k] += 1.0 if tj[k] == m[k] else 0.0
        for k in range(_TILE):
            s[k] = _log1p_sum(s[k] + ties[k])
        for k in range(min(_TILE, rows - r0)):
            orow = out[r0 + k]
            m64 = np.float64(m[k])
            lse = s[k]
            for j in range(cols):
                orow[j] = (np.float64(t[j, k]) - m64) - lse
            if not abs(m[k]) <= _BIG:
                _nan_row(orow)


@_inline
def _log_softmax(shifted_exp, zero, one, x, b, out, dtype):
    """``_log_softmax_tiles`` for rows of fewer than ``_TILE_BELOW`` columns,
    else ``_log_softmax_rows``, with their scratch in ``dtype``."""
    cols = x.shape[1]
    if cols < _TILE_BELOW:
        _log_softmax_tiles(shifted_exp, zero, one, x, b, out, np.empty((cols, _TILE), dtype),
                           np.empty(_TILE, dtype), np.empty((cols, _TILE), dtype))
    else:
        _log_softmax_rows(shifted_exp, zero, one, x, b, out, _padded_row(cols, dtype), _padded_row(cols, dtype),
                          _padded_row(cols, dtype), _padded_row(cols, dtype))


@_jit
def log_softmax_f64(x, b, out):
    """(x_i - m) - log1p(s) over each row of 2-D x, m = max(x), s = (ties - 1)
    plus the sum of exp(x_j - m) over the non-maximal entries
    (``activations._log_softmax_exact``): entries near the maximum keep full
    relative accuracy."""
    _log_softmax(_shifted_exp, 0.0, 1.0, x, b, out, np.float64)


@_jit
def log_softmax_f32(x, b, out):
    """``log_softmax_f64`` for float32, the exponentials in float32 lanes."""
    _log_softmax(_shifted_exp32, _F32(0.0), _F32(1.0), x, b, out, np.float32)
