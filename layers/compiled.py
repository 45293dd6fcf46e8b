"""Compiled activation kernels (numba), used when the ``fast`` extra is installed.

In NumPy every elementwise step is a pass over memory: exact GELU takes some
30 of them, and on CPUs without AVX-512 NumPy's expm1, log1p and float64
tanh are scalar loops.  A compiled loop makes one pass with every step in
registers.  The loops follow the NumPy kernels in ``layers.activations``
step for step and take their constants from there, so both paths compute
the same functions to the same accuracy (a few ulps; the tests run both
against mpmath).  Exact GELU and the softmax family's exponentials on
float32 run in float32 lanes (eight to float64's four); the other loops
work in float64 and round once on the store.

Three details make the loops fast and keep them exact:

* ``_exp``, ``_exp32``, ``_expm1_nonpos``, ``_log`` and ``_log1p_unit`` are
  polynomials with the power of two assembled from (or read off) the bits,
  so LLVM vectorises the whole loop (a call into libm would not be);
* exact products use a fused multiply-add (``_fma``, the ``llvm.fma``
  intrinsic), which stays exact under the ``contract`` flag that lets LLVM
  fuse the polynomial steps;
* sums and extrema over a row use ``_add_reassoc``, ``_maximum`` and
  ``_minimum``, which LLVM may reorder into per-lane partial results.

Elementwise kernels take flat arrays ``(x, out, *params)``, row-wise ones
2-D arrays; ``activations._run_compiled`` calls both.  This module imports numba at import time; ``layers.activations``
imports it only when one of these activations is first evaluated, and only
if numba is installed (see ``activations.compiled_kernels``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from layers.activations import (_ERFC32_G, _ERFC_H, _GT64_C1, _GT64_C2, _GT64_K1, _GT64_K2,
                                _GT_A, _GT_K, _GRID7, _SQRT2, _TS_A64, _TS_B64, _TS_LIMIT)

# nogil: the activation thread pool runs chunks concurrently; cache: compile
# once per machine (about a second per kernel), not once per process.
_jit = numba.njit(nogil=True, cache=True, error_model="numpy", boundscheck=False,
                  fastmath={"contract"})
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


@_jit
def gelu_erf_f64(x, out):
    """Exact GELU, float64: ``_gelu_erf64_into`` with -x^2/2 carried by an FMA."""
    for i in range(x.size):
        v = x[i]
        a = _clamp_abs(v, 39.5)
        a2 = a * a
        a2_lo = _fma(a, a, -a2)              # a^2 = a2 + a2_lo exactly
        wh = -0.5 * a2
        wl = -0.5 * a2_lo
        h = wh + wl
        lo = (wh - h) + wl                   # -x^2/2 = h + lo, |lo| <= ulp(h)/2
        t = (a - 3.0 * _SQRT2) / (a + 3.0 * _SQRT2)
        q = _erfc_h(t) / (a * (2.0 * _SQRT2) + 2.0)   # erfc(z) exp(z^2) / 2
        out[i] = _max0(v) - q * a * (1.0 + lo) * _exp(h)


_ERFC32_G32 = tuple(_F32(c) for c in _ERFC32_G)


@_jit
def gelu_erf_f32(x, out):
    """Exact GELU, float32: ``_gelu_erf32_into`` in float32 registers.

    x^2 = h + l exactly (an FMA gives l), and exp(-x^2/2) = exp(-h/2) (1 - l/2)
    to far below float32's rounding, so the left tail keeps its relative
    accuracy without float64 (measured: 2.4 eps; the NumPy kernel's 2.8).
    """
    for i in range(x.size):
        v = x[i]
        a = _clamp_abs(v, _F32(15.0))
        h = a * a
        l = _fma(a, a, -h)
        e = _exp32(_F32(-0.5) * h) * (_F32(1.0) - _F32(0.5) * l)
        t = (a - _F32(2.0 * _SQRT2)) / (a + _F32(2.0 * _SQRT2))
        q = _horner_step(_F32(0.0), _ERFC32_G32, t) / (a * _F32(_SQRT2) + _F32(1.0))
        out[i] = _max0_32(v) - q * a * e


@_jit
def gelu_tanh_f32(x, out):
    """GELU approximate='tanh', float32 input: ``_gelu_tanh32_into`` in registers."""
    for i in range(x.size):
        a = np.float64(x[i])
        a = -28.0 if a < -28.0 else a        # below, the result is -0 (and -inf gives -0)
        w = a * (a * a * (-_GT_K * _GT_A) - _GT_K)          # -2u
        out[i] = a / (1.0 + _exp(w if w < 709.0 else 709.0))


@_jit
def gelu_tanh_f64(x, out):
    """GELU approximate='tanh', float64: ``_gelu_tanh64_into``'s exact -2u.

    With w = -2u = wh + wl: x / (1 + E) for w <= 0 and x E / (1 + E) for
    w > 0, where E = exp(-|w|) = h^2 and h = exp(-|w|/2) stays normal, so
    x E is formed as (x h) h without a premature underflow.
    """
    for i in range(x.size):
        v = x[i]
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
        out[i] = num / (1.0 + hh * hh)


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


@_jit
def elu(x, out, alpha, divisor, scale):
    """scale * max(x, 0) + alpha * expm1(min(x, 0) / divisor), in float64
    registers: ELU (divisor = scale = 1), SELU and CELU (divisor = alpha),
    as ``activations._elu_into``."""
    for i in range(x.size):
        v = np.float64(x[i])
        t = 0.0 if v > 0.0 else v            # min(v, 0); NaN passes through
        out[i] = scale * _max0(v) + alpha * _expm1_nonpos(t / divisor)


# expm1 on [-ln 2, 0] for float32: Taylor to t^9 (truncation below 1e-8 relative)
_EXPM1_TAYLOR32 = tuple(_F32(c) for c in _EXPM1_TAYLOR[:10])
_LN2_32 = _F32(_LN2)


@_inline
def _expm1_nonpos32(t):
    """``_expm1_nonpos`` in float32 lanes (within about 2 ulps)."""
    p = _horner_step(_F32(0.0), _EXPM1_TAYLOR32, t)
    e = _exp32(t) - _F32(1.0)
    return p if t >= -_LN2_32 else e


@_jit
def elu_f32(x, out, alpha, divisor, scale):
    """``elu`` for float32 in float32 lanes; the parameters are float32."""
    for i in range(x.size):
        v = x[i]
        t = _F32(0.0) if v > _F32(0.0) else v
        out[i] = scale * (v if v > _F32(0.0) else _F32(0.0)) + alpha * _expm1_nonpos32(t / divisor)


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


@_jit
def sigmoid(x, out):
    """1 / (1 + exp(-x)) as (1 or e) / (1 + e), e = exp(-|x|): no overflow,
    and relative accuracy in both tails (``activations._sigmoid_into``)."""
    for i in range(x.size):
        v = np.float64(x[i])
        e = _exp(-abs(v))
        out[i] = (e if v < 0.0 else 1.0) / (1.0 + e)


@_jit
def sigmoid_f32(x, out):
    """``sigmoid`` for float32 in float32 lanes with ``_exp32`` (eight lanes
    to four; within 2.5 ulps)."""
    for i in range(x.size):
        v = x[i]
        e = _exp32(-abs(v))
        out[i] = (e if v < _F32(0.0) else _F32(1.0)) / (_F32(1.0) + e)


@_jit
def softplus(x, out, sign):
    """sign = 1: softplus, max(x, 0) + log1p(exp(-|x|)); sign = -1:
    log_sigmoid, min(x, 0) - log1p(exp(-|x|))."""
    for i in range(x.size):
        v = np.float64(x[i])
        edge = (v if v > 0.0 else 0.0) if sign > 0.0 else (0.0 if v > 0.0 else v)
        out[i] = edge + sign * _log1p_unit(_exp(-abs(v)))


_BIG = float(np.finfo(np.float64).max)


@_jit
def swish(x, out, beta):
    """x * sigmoid(beta x) (``activations._swish_into``), beta != 0.

    p = beta x is carried with its rounding error d (an FMA), and with
    h = exp(-|p + d| / 2) = exp(-|p|/2) (1 -+ d/2) the result is
    x / (1 + h^2) for p >= 0 and (x h) h / (1 + h^2) for p < 0, where x h h
    would lose digits to a subnormal h^2.
    """
    for i in range(x.size):
        v = np.float64(x[i])
        p = beta * v
        d = _fma(beta, v, -p)
        d = d if abs(d) < abs(p) else 0.0    # not finite where p overflows
        neg = p < 0.0
        h = _exp(-0.5 * abs(p)) * (1.0 + 0.5 * (d if neg else -d))
        vc = -_BIG if v < -_BIG else (_BIG if v > _BIG else v)   # (+-inf * 0) * 0 -> 0
        num = (vc * h) * h if neg else v
        out[i] = num / (1.0 + h * h)


_BIG32 = _F32(np.finfo(np.float32).max)


@_jit
def swish_f32(x, out, beta):
    """``swish`` for float32 in float32 lanes with ``_exp32`` (within about
    4 ulps); beta is a float32."""
    for i in range(x.size):
        v = x[i]
        p = beta * v
        d = _fma(beta, v, -p)
        d = d if abs(d) < abs(p) else _F32(0.0)
        neg = p < _F32(0.0)
        h = _exp32(_F32(-0.5) * abs(p)) * (_F32(1.0) + _F32(0.5) * (d if neg else -d))
        vc = -_BIG32 if v < -_BIG32 else (_BIG32 if v > _BIG32 else v)
        num = (vc * h) * h if neg else v
        out[i] = num / (_F32(1.0) + h * h)


@_inline
def _tanh(v):
    """tanh(v) = -t / (2 + t) with t = expm1(-2|v|), the sign of v restored."""
    t = _expm1_nonpos(-2.0 * abs(v))
    return math.copysign(-t / (2.0 + t), v)


@_jit
def tanh(x, out):
    """tanh, for float64 (where NumPy's loop is slower than this on AVX2)."""
    for i in range(x.size):
        out[i] = _tanh(x[i])


@_jit
def tanh_shrink(x, out):
    """x - tanh(x): for |x| < 1.5, where the subtraction cancels, the
    continued-fraction rational of ``activations.tanh_shrink`` (positive
    terms only); beyond, the subtraction."""
    for i in range(x.size):
        v = np.float64(x[i])
        xc = -_TS_LIMIT if v < -_TS_LIMIT else (_TS_LIMIT if v > _TS_LIMIT else v)
        z = xc * xc
        small = xc * z * _horner_step(0.0, _TS_A64, z) / _horner_step(0.0, _TS_B64, z)
        out[i] = small if abs(v) < _TS_LIMIT else v - _tanh(v)


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
def _row_top(xr, neg):
    """max(x) (neg False) or max(-x) (neg True) of a row, in its dtype (eight
    float32 lanes); NaN if the row has a NaN."""
    m = xr[0]
    if neg:
        for j in range(1, xr.size):
            m = _minimum(m, xr[j])
        return -m
    for j in range(1, xr.size):
        m = _maximum(m, xr[j])
    return m


@_inline
def _row_sum(e):
    """Sum of a float32/float64 row in float64, in per-lane partial sums."""
    s = 0.0
    for j in range(e.size):
        s = _add_reassoc(s, np.float64(e[j]))
    return s


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


@_inline
def _exps64(xr, m, sign, e):
    for j in range(xr.size):
        e[j] = _shifted_exp(sign * xr[j], m)


@_inline
def _exps32(xr, m, sign, e):
    for j in range(xr.size):
        e[j] = _shifted_exp32(sign * xr[j], m)


@_inline
def _normalise(e, orow):
    inv = 1.0 / _row_sum(e)
    for j in range(orow.size):
        orow[j] = np.float64(e[j]) * inv


@_jit
def softmax_f64(x, out, neg):
    """exp(s x_i - m) / sum_j exp(s x_j - m) over each row of 2-D x, s = -1 if
    neg (softmin) else 1, m = max(s x), x - m carried exactly
    (``activations._softmax_exact``).  A row with a NaN or an infinite
    maximum becomes NaN, as on the NumPy path.  x may be out."""
    e = np.empty(x.shape[1])
    sign = -1.0 if neg else 1.0
    for r in range(x.shape[0]):
        m = _row_top(x[r], neg)
        if not abs(m) <= _BIG:
            _nan_row(out[r])
            continue
        _exps64(x[r], m, sign, e)
        _normalise(e, out[r])


@_jit
def softmax_f32(x, out, neg):
    """``softmax_f64`` for float32: exponentials in float32 lanes, sum and
    quotient in float64."""
    e = np.empty(x.shape[1], np.float32)
    sign = _F32(-1.0) if neg else _F32(1.0)
    for r in range(x.shape[0]):
        m = _row_top(x[r], neg)
        if not abs(m) <= _BIG:
            _nan_row(out[r])
            continue
        _exps32(x[r], m, sign, e)
        _normalise(e, out[r])


@_inline
def _log_normalise(xr, m, e, d, orow):
    """(x_j - m) - log1p(s), s = sum(e) + ties - 1; e is 0 at the maximal
    entries.  The last pass reads d = x - m, not x, so x may be out."""
    m64 = np.float64(m)
    ties = 0
    for j in range(xr.size):
        d[j] = np.float64(xr[j]) - m64   # float32: nearly exact, in float64
        ties += xr[j] == m
    s = _row_sum(e) + np.float64(ties - 1)
    lse = _log1p_unit(s) if s <= 1.0 else _log(1.0 + s)
    for j in range(xr.size):
        orow[j] = d[j] - lse


@_jit
def log_softmax_f64(x, out):
    """(x_i - m) - log1p(s) over each row of 2-D x, m = max(x), s = (ties - 1)
    plus the sum of exp(x_j - m) over the non-maximal entries
    (``activations._log_softmax_exact``): entries near the maximum keep full
    relative accuracy."""
    e = np.empty(x.shape[1])
    d = np.empty(x.shape[1])
    for r in range(x.shape[0]):
        xr = x[r]
        m = _row_top(xr, False)
        if not abs(m) <= _BIG:
            _nan_row(out[r])
            continue
        for j in range(xr.size):
            t = _shifted_exp(xr[j], m)
            e[j] = t if xr[j] < m else 0.0
        _log_normalise(xr, m, e, d, out[r])


@_jit
def log_softmax_f32(x, out):
    """``log_softmax_f64`` for float32, the exponentials in float32 lanes."""
    e = np.empty(x.shape[1], np.float32)
    d = np.empty(x.shape[1])
    for r in range(x.shape[0]):
        xr = x[r]
        m = _row_top(xr, False)
        if not abs(m) <= _BIG:
            _nan_row(out[r])
            continue
        for j in range(xr.size):
            t = _shifted_exp32(xr[j], m)
            e[j] = t if xr[j] < m else _F32(0.0)
        _log_normalise(xr, m, e, d, out[r])
