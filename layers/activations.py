"""Activation functions for NumPy forward passes.

Every activation is a plain function ``fn(x, out=None, **params)`` in the
style of Keras 3 activations, registered under its own ``__name__`` plus
explicit aliases.  Layers obtain one through :func:`get_act`, which validates
the parameters once and returns an immutable :class:`Activation`::

    act = get_act("leaky_ReLU", alpha=0.1)
    y = act(u)            # same as act.forward(u)
    act(u, out=u)         # in place

Conventions shared by all built-in functions:

* Output dtype equals input dtype (float32 stays float32).  Integer and bool
  inputs are converted to float64 first; float16 is computed in float32 and
  rounded back.  Float parameters are rounded to the input dtype.
* Results are accurate to a few ulps (relative) for every finite input where
  the true value is representable, including the tails and tiny arguments;
  no floating-point warnings are emitted.  NaN propagates.
* ``softmax``, ``softmin`` and ``log_softmax`` normalise over the last axis
  (one row per sample); every other function is elementwise.
* Large inputs are processed in cache-sized chunks on a small thread pool
  (see :func:`set_num_threads`); the result does not depend on the chunking.
* Where NumPy's tanh/expm1/log1p loop is vectorised on the running CPU
  (decided once at import, see ``_native_simd_loops``) kernels call it;
  otherwise they use composite formulas of equal accuracy.
* With numba installed, GELU, the ELU family (ELU, SELU, CELU), sigmoid,
  Swish/SiLU, softplus, log_sigmoid, tanh_shrink, float64 tanh, softmax,
  softmin, log_softmax, identity, ReLU, ReLU6, hard_tanh, the leaky family
  (leaky_ReLU, PReLU, RReLU), threshold and the shrinks run as compiled
  loops (``layers.compiled``, see :func:`compiled_kernels`).
* ``act(x, bias=b)`` is ``act(x + b)``, the sum rounded to the dtype first:
  a layer's ``x @ w + b`` and its activation, where the cheap compiled loops
  add ``b`` themselves (one pass over memory instead of two).

Names are matched after lowercasing and removing everything except letters
and digits, so ``leaky_ReLU``, ``LeakyReLU`` and ``leaky-relu`` are the same
function.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import difflib
import functools
import inspect
import itertools
import math
import numbers
import os
import re
import threading
from typing import Any, Callable, Iterable

import numpy as np

from layers.registry import registry_table

__all__ = [
    "Activation",
    "get_act",
    "register_activation",
    "activation_names",
    "activation_table_markdown",
    "set_num_threads",
    "get_num_threads",
]

Range = tuple[float, float]

# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

_ELEMENTWISE = "elementwise"
_ROWWISE = "rowwise"
_OPAQUE = "opaque"


class _Spec:
    __slots__ = ("name", "fn", "kernel", "kind", "aliases", "defaults",
                 "output_range", "formula", "check", "compiled", "cheap")

    def __init__(self, name, fn, kernel, kind, aliases, defaults,
                 output_range, formula, check, compiled=None, cheap=False):
        self.name = name
        self.fn = fn
        self.kernel = kernel
        self.kind = kind
        self.aliases = aliases
        self.defaults = defaults
        self.output_range = output_range
        self.formula = formula
        self.check = check
        self.compiled = compiled
        self.cheap = cheap


_REGISTRY: dict[str, _Spec] = registry_table({})
_KEYS: dict[str, str] = registry_table({})  # normalised spelling -> canonical name
_REGISTRY_LOCK = threading.Lock()


def _normalise(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _signature_defaults(fn: Callable, skip: int) -> dict[str, Any]:
    """Parameters after the first ``skip`` positional ones, with defaults."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot inspect the signature of {fn!r}") from exc
    params = list(sig.parameters.values())
    if len(params) < 1 or params[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise TypeError(f"activation {getattr(fn, '__name__', fn)!r} must take "
                        "the input array as its first positional parameter")
    defaults: dict[str, Any] = {}
    for p in params[skip:]:
        if p.name == "out":
            continue
        if p.kind in (inspect.Parameter.VAR_POSITIONAL,
                      inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"activation {fn.__name__!r} may not take *args or "
                            "**kwargs; declare each parameter with a default")
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"parameter {p.name!r} of activation "
                            f"{fn.__name__!r} needs a default value")
        defaults[p.name] = p.default
    return defaults


def _add_spec(spec: _Spec) -> None:
    keys = [_normalise(spec.name)] + [_normalise(a) for a in spec.aliases]
    for spelling, key in zip([spec.name, *spec.aliases], keys):
        if not key:
            raise ValueError(f"activation name {spelling!r} has no letters or digits")
    with _REGISTRY_LOCK:
        if spec.name in _REGISTRY:
            raise ValueError(f"activation {spec.name!r} is already registered")
        for spelling, key in zip([spec.name, *spec.aliases], keys):
            other = _KEYS.get(key)
            if other is not None:
                raise ValueError(f"activation name {spelling!r} collides with "
                                 f"{other!r} (both normalise to {key!r})")
        _REGISTRY[spec.name] = spec
        for key in keys:
            _KEYS[key] = spec.name


def _check_range(output_range):
    if output_range is None or callable(output_range):
        return output_range
    try:
        lo, hi = (float(v) for v in output_range)
    except (TypeError, ValueError):
        raise TypeError("output_range must be a (low, high) pair of numbers, "
                        "a callable of the parameters, or None") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError("output_range must have finite bounds with low <= high "
                         "(use None for unbounded functions)")
    return (lo, hi)


def register_activation(fn: Callable | None = None, *, name: str | None = None,
                        aliases: Iterable[str] = (), output_range=None,
                        formula: str | None = None):
    """Register a user activation so that :func:`get_act` can find it.

    Usable as ``@register_activation`` or ``@register_activation(...)``.  The
    function takes the input array first and its parameters as keyword
    arguments with defaults, ``fn(x, **params) -> ndarray``; the defaults are
    read from its signature.  Names are matched case- and punctuation-
    insensitively, and a name or alias that collides with a registered one
    raises ValueError.  User functions are applied to the whole input at once
    (they are not assumed to be elementwise).

    Args:
        fn: The activation function.
        name: Canonical name; defaults to ``fn.__name__``.
        aliases: Further spellings.
        output_range: ``(low, high)`` closed interval containing every output,
            a callable ``f(**params) -> (low, high) | None``, or None.
        formula: One-line formula shown by :func:`activation_table_markdown`.

    Returns:
        ``fn`` itself (or a decorator when ``fn`` is omitted).
    """
    def deco(f: Callable) -> Callable:
        if not callable(f):
            raise TypeError("register_activation expects a function")
        aka = (aliases,) if isinstance(aliases, str) else tuple(aliases)
        for a in aka:
            if not isinstance(a, str):
                raise TypeError(f"aliases must be strings, got {a!r}")
        nm = name if name is not None else getattr(f, "__name__", None)
        if not isinstance(nm, str) or not nm:
            raise TypeError("activation name must be a non-empty string")
        _add_spec(_Spec(nm, f, None, _OPAQUE, aka, _signature_defaults(f, 1),
                        _check_range(output_range), formula or _first_line(f), None))
        return f
    return deco if fn is None else deco(fn)


def _first_line(f: Callable) -> str:
    doc = inspect.getdoc(f) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _builtin(kind: str, *, aliases: tuple[str, ...] = (), output_range=None,
             formula: str, check: Callable | None = None, compiled: Callable | None = None,
             cheap: bool = False):
    """Register the NumPy ``kernel(x, out, **params)`` and return its public wrapper.

    The kernel receives float32/float64 arrays of equal shape and dtype (``out``
    may be ``x`` itself, so a kernel reads every input it needs before its
    first write to ``out``) and runs with floating-point warnings silenced.

    ``compiled(jit, dtype, **params)`` names the compiled loop of the same
    function, ``(loop, *loop_params)`` from the module ``jit``
    (``layers.compiled``), or None where there is none for ``dtype``; it is
    used instead of the kernel whenever compiled kernels are available.
    ``cheap``: the NumPy kernel is already about one pass over memory, so the
    compiled loop gains only the pass that adds a layer's bias (see
    :func:`compiled_gain`).
    """
    def deco(kernel: Callable) -> Callable:
        @functools.wraps(kernel)
        def public(x, out=None, **params):
            unknown = params.keys() - spec.defaults.keys()
            if unknown:
                raise TypeError(f"{spec.name} got unexpected parameters {sorted(unknown)}")
            xw, ow, final = _begin(x, out)
            _run(spec, {**spec.defaults, **params}, xw, ow)
            return _end(ow, final)

        spec = _Spec(kernel.__name__, public, kernel, kind, tuple(aliases),
                     _signature_defaults(kernel, 2), _check_range(output_range), formula, check,
                     compiled, cheap)
        _add_spec(spec)
        return public
    return deco


# --------------------------------------------------------------------------
# Array plumbing
# --------------------------------------------------------------------------

def _work_dtype(dt: np.dtype) -> tuple[np.dtype, np.dtype]:
    """(dtype the kernel runs in, dtype of the result)."""
    if dt == np.float32 or dt == np.float64:
        return dt, dt
    if dt.kind in "biu":
        f64 = np.dtype(np.float64)
        return f64, f64
    if dt == np.float16:
        return np.dtype(np.float32), dt
    raise TypeError(f"activations need a real floating-point or integer array, "
                    f"got dtype {dt}")


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.strides == b.strides)


def _begin(x, out):
    a = np.asarray(x)
    work, res = _work_dtype(a.dtype)
    xw = a if a.dtype == work else a.astype(work)
    if out is None:
        final = None if work == res else np.empty(a.shape, res)
        return xw, np.empty(a.shape, work), final
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != a.shape:
        raise ValueError(f"out has shape {out.shape}, expected {a.shape}")
    if out.dtype != res:
        raise TypeError(f"out has dtype {out.dtype}, expected {res}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if work != res:
        return xw, np.empty(a.shape, work), out
    if out is xw or _same_memory(out, xw) or not np.may_share_memory(out, xw):
        return xw, out, None
    # Partial overlap: kernels only support exact aliasing.
    return xw, np.empty(a.shape, work), out


def _end(ow: np.ndarray, final: np.ndarray | None) -> np.ndarray:
    if final is None:
        return ow
    np.copyto(final, ow, casting="unsafe")
    return final


# --------------------------------------------------------------------------
# Chunking and the thread pool
# --------------------------------------------------------------------------

_PARALLEL_MIN = 1 << 18      # elements; smaller inputs run inline
# Elements per chunk.  Each chunk costs some 10-40 ufunc calls whose Python
# overhead holds the GIL; chunks this large amortise it (measured: 1.5-2x
# faster on two threads than 1 << 15), while temporaries stay in L2/L3.
_CHUNK = 1 << 17
# Largest request served from the per-thread scratch buffers: layers call
# activations inline on row blocks of up to this many elements (it matches
# layers.blocks.BLOCK_ELEMENTS, which a test checks), so in-network calls
# never allocate.  Memory stays bounded: one buffer of this size per
# (dtype, slot) a kernel uses (at most 6 slots, 2 MiB each in float64) per
# thread, and larger requests get fresh arrays.
_SCRATCH_MAX = 1 << 18
_num_threads = max(1, os.cpu_count() or 1)
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def set_num_threads(k: int) -> None:
    """Cap the worker threads used for large inputs (1 disables the pool)."""
    global _num_threads, _pool
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"number of threads must be a positive integer, got {k!r}")
    with _pool_lock:
        _num_threads = int(k)
        old, _pool = _pool, None
    if old is not None:
        old.shutdown(wait=False)


def get_num_threads() -> int:
    """Number of worker threads used for large inputs."""
    return _num_threads


def _get_pool() -> concurrent.futures.ThreadPoolExecutor | None:
    global _pool
    if _num_threads <= 1:
        return None
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=_num_threads, thread_name_prefix="activations")
        return _pool


@functools.lru_cache(maxsize=256)
def _compiled_choice(spec: _Spec, params: tuple, dt: np.dtype, jit) -> tuple | None:
    """(loop, loop params) from ``spec.compiled``, or None; cached, as layers
    call their activation once per row block."""
    with np.errstate(over="ignore"):     # a parameter beyond float32 becomes inf, as in NumPy's casts
        chosen = spec.compiled(jit, dt, **dict(params))
    if chosen is None:
        return None
    loop, *loop_params = chosen
    return loop, tuple(loop_params)


def _chosen_kernel(spec: _Spec, params: dict, dt: np.dtype,
                   bias: np.ndarray | None) -> Callable[[np.ndarray, np.ndarray, Any], None]:
    """``kernel(x, out, bias)`` for one call: the compiled loop when there is
    one (see ``compiled_kernels``), else the NumPy kernel after the bias."""
    jit = compiled_kernels() if spec.compiled is not None else None
    chosen = None if jit is None else _compiled_choice(spec, tuple(params.items()), dt, jit)
    if chosen is not None:
        loop, loop_params = chosen
        rows = spec.kind == _ROWWISE
        return lambda x, out, b: _run_compiled(loop, x, out, *loop_params, rows=rows, bias=b)

    def numpy_kernel(x, out, b):
        if b is not None:
            np.add(x, b, out=out)
            x = out
        spec.kernel(x, out, **params)
    return numpy_kernel


def _run(spec: _Spec, params: dict, xw: np.ndarray, ow: np.ndarray,
         bias: np.ndarray | None = None) -> None:
    """act(xw + bias) into ``ow`` (``bias`` along the last axis, or None), in
    cache-sized chunks on the thread pool when the input is large."""
    if spec.kind == _ROWWISE and xw.ndim == 0:
        raise ValueError(f"{spec.name} needs an input with at least one axis")
    kernel = _chosen_kernel(spec, params, xw.dtype, bias)
    n = xw.size
    chunked = (n >= _PARALLEL_MIN and xw.flags.c_contiguous
               and ow.flags.c_contiguous)
    if chunked and spec.kind == _ELEMENTWISE and bias is None:
        xf, of = xw.reshape(-1), ow.reshape(-1)
        step = _CHUNK
        total = n
    elif chunked and xw.ndim >= 2 and xw.shape[-1] > 0:
        # row-wise functions, and the bias, need whole rows
        cols = xw.shape[-1]
        xf, of = xw.reshape(-1, cols), ow.reshape(-1, cols)
        step = max(1, _CHUNK // cols)
        total = xf.shape[0]
    else:
        with np.errstate(all="ignore"):
            kernel(xw, ow, bias)
        return

    nchunks = -(-total // step)
    # Workers take chunk indices from a shared counter (next() on
    # itertools.count is atomic under the GIL): dynamic load balancing
    # without one future per chunk.
    counter = itertools.count()

    def worker() -> None:
        with np.errstate(all="ignore"):
            while True:
                i = next(counter)
                if i >= nchunks:
                    return
                start = i * step
                kernel(xf[start:start + step], of[start:start + step], bias)

    pool = _get_pool()
    if pool is None or nchunks == 1:
        worker()
        return
    futures = [pool.submit(worker) for _ in range(min(_num_threads, nchunks) - 1)]
    try:
        worker()
    finally:
        for f in futures:
            f.result()


_tls = threading.local()


def _thread_buffer(key: tuple, shape: tuple, dt: np.dtype, make: Callable) -> np.ndarray:
    """A view of ``shape`` on this thread's buffer ``key``, created by
    ``make(_SCRATCH_MAX, dtype)`` on first use (callers check the size)."""
    bufs = getattr(_tls, "bufs", None)
    if bufs is None:
        bufs = _tls.bufs = {}
    b = bufs.get(key)
    if b is None:
        b = bufs[key] = make(_SCRATCH_MAX, dt)
    return b[:math.prod(shape)].reshape(shape)


def _scratch(like: np.ndarray, slot: int, dtype=None) -> np.ndarray:
    """Uninitialised array shaped like ``like`` from a per-thread buffer.

    Requests up to ``_SCRATCH_MAX`` elements (a chunk or a layer block) reuse
    one buffer per (dtype, slot) and thread, so the working set stays in
    L2/L3 and nothing is allocated; a kernel must use distinct slots for
    arrays that are alive at the same time and never return a scratch array.
    """
    dt = like.dtype if dtype is None else np.dtype(dtype)
    if like.size > _SCRATCH_MAX:
        return np.empty(like.shape, dt)
    return _thread_buffer((dt.char, slot), like.shape, dt, np.empty)


def _read_only_zeros(size: int, dt: np.dtype) -> np.ndarray:
    b = np.zeros(size, dt)
    b.flags.writeable = False
    return b


def _zeros(like: np.ndarray) -> np.ndarray | None:
    """Read-only zeros shaped like ``like`` (a per-thread buffer), or None if
    ``like`` is larger than ``_SCRATCH_MAX``.

    np.maximum/np.minimum against a zeros array run a SIMD loop, 3x faster
    than against the scalar 0.0 (whose stride-0 operand is not vectorised).
    """
    if like.size > _SCRATCH_MAX:
        return None
    return _thread_buffer((like.dtype.char, "zeros"), like.shape, like.dtype, _read_only_zeros)


# --------------------------------------------------------------------------
# Which NumPy loops are vectorised on this CPU
# --------------------------------------------------------------------------

def _native_simd_loops() -> dict[tuple[str, str], bool]:
    """``{(ufunc name, dtype char): NumPy runs a SIMD loop for it here}``.

    Some kernels have two implementations.  On CPUs where NumPy's loop for
    float64 tanh or for expm1/log1p is a scalar libm call (NumPy < 2.0, or
    x86 CPUs without AVX-512, where those loops only exist for NumPy's
    X86_V4 target) a composite of a few vectorised passes (exp, log and
    arithmetic) is several times faster; where the loop is vectorised (the
    SVML-derived AVX-512 loops, about 1 ulp) calling the ufunc directly is
    both faster and simpler.  The choice is made once at import, from
    ``numpy.lib.introspect``: a loop counts as native when its current
    dispatch target is not NumPy's baseline.  Every entry is False when the
    information is unavailable, so an unknown platform gets the composites.
    Kernels ask through :func:`_native`; tests patch this table to run both.
    """
    wanted = {("tanh", "d"), ("expm1", "f"), ("log1p", "f"), ("log1p", "d")}
    table = dict.fromkeys(wanted, False)
    try:
        from numpy.lib import introspect
        info = introspect.opt_func_info(func_name="^(tanh|expm1|log1p)$")
    except Exception:  # NumPy < 2.0 or an unexpected format
        return table
    for name, ch in wanted:
        loop = info.get(name, {}).get(ch + ch, {})
        current = loop.get("current", "baseline") if isinstance(loop, dict) else "baseline"
        table[name, ch] = not str(current).startswith("baseline")
    return table


_NATIVE_SIMD = _native_simd_loops()


def _native(ufunc: str, dtype: np.dtype) -> bool:
    """True if NumPy's ``ufunc`` loop for ``dtype`` is vectorised (see above)."""
    return _NATIVE_SIMD.get((ufunc, dtype.char), False)


# Compiled kernels: layers.compiled, loaded on first use (it imports numba,
# about 0.4 s); Ellipsis until then, None when unavailable or switched off.
_COMPILED: Any = ...
_COMPILED_LOCK = threading.Lock()
COMPILED_ENV = "FWDRUNNER_COMPILED"


def compiled_kernels():
    """The compiled-kernel module ``layers.compiled``, or None.

    None when numba is not installed (``pip install 'fwdrunner[fast]'`` adds
    it), when the environment variable ``FWDRUNNER_COMPILED`` is ``0``, or
    inside ``allow_compiled(False)``; the NumPy kernels then compute the same
    functions, more slowly.  Looked up on the first call that can use it.
    """
    global _COMPILED
    if _COMPILED is ...:
        # One thread loads while the others wait: a chunk that saw "not yet" would take the
        # NumPy kernels and differ from its neighbours in the last bit.
        with _COMPILED_LOCK:
            if _COMPILED is ...:
                _COMPILED = _load_compiled()
    return _COMPILED


def _load_compiled():
    if not compiled_available():
        return None
    try:
        from layers import compiled
    except ImportError:
        return None
    return compiled


def compiled_available() -> bool:
    """Whether compiled kernels can be used here: numba is installed and
    ``FWDRUNNER_COMPILED`` is not ``0``.  Imports nothing."""
    import importlib.util
    return (os.environ.get(COMPILED_ENV, "1").strip() != "0"
            and importlib.util.find_spec("numba") is not None)


def compiled_gain(name: str) -> float:
    """What a compiled loop saves for activation ``name``, relative to the
    functions that need exp, log or erf (1.0): 1/16 for the piecewise-linear
    ones, whose NumPy kernel is already about one pass and whose loop saves
    the bias pass (about 0.3 ns a value), 0.0 where there is no compiled loop
    (user activations included).  The runner weighs ``kernels=auto`` by it."""
    spec = _resolve(name)
    if spec.compiled is None:
        return 0.0
    return 1.0 / 16.0 if spec.cheap else 1.0


@contextlib.contextmanager
def allow_compiled(enabled: bool):
    """Within the block, activations use the compiled kernels only if
    ``enabled`` (and they are available); the previous choice is restored
    after it.  numba itself is imported on the first call that uses it."""
    global _COMPILED
    before = _COMPILED
    if not enabled:
        _COMPILED = None
    elif before is None:
        _COMPILED = ...                    # look it up again on first use
    try:
        yield
    finally:
        _COMPILED = before


def _run_compiled(loop: Callable, x: np.ndarray, out: np.ndarray, *params, rows: bool = False,
                  bias: np.ndarray | None = None) -> None:
    """Run a compiled loop (``layers.compiled``): out = f(x + bias), with the
    loop's scalar ``params`` after the arrays.  Row-wise loops (``rows``)
    take (rows, cols) arrays, elementwise ones flat arrays; all take the
    bias, as it is (row-wise) or tiled (``_tiled_bias``), an empty one for
    none.

    The loops take contiguous memory, in place or apart.  Other overlaps and
    strided views go through a per-thread scratch buffer and one copy, so
    results do not depend on the layout.
    """
    if x.size == 0:
        return
    shape = (-1, x.shape[-1]) if rows else (-1,)
    b = _no_bias(x.dtype) if bias is None else (bias if rows else _tiled_bias(bias))

    def call(src, dst):
        loop(src.reshape(shape), b, dst.reshape(shape), *params)

    if (x.flags.c_contiguous and out.flags.c_contiguous
            and (x is out or _same_memory(x, out) or not np.may_share_memory(x, out))):
        call(x, out)
        return
    src = np.ascontiguousarray(x)
    res = _scratch(src, 0)
    call(src, res)
    np.copyto(out, res)


_BIAS_ALIGN = 64      # elements: a multiple of every vector loop's step (16 lanes x 4)
_BIAS_TILE_MAX = 4096


def _tiled_bias(bias: np.ndarray) -> np.ndarray:
    """``bias`` repeated over k rows, k * cols a multiple of ``_BIAS_ALIGN``
    where that stays within ``_BIAS_TILE_MAX`` elements (else k = 1), in a
    per-thread buffer.  A biased loop runs its vector loop once per tile and
    ends each tile with scalar steps for what is left: none for such a tile,
    where a 100-column row would leave 4 of its 100 elements."""
    cols = bias.size
    k = _BIAS_ALIGN // math.gcd(cols, _BIAS_ALIGN)
    if cols * k > _BIAS_TILE_MAX:
        return bias
    tile = _thread_buffer((bias.dtype.char, "bias"), (k, cols), bias.dtype,
                          lambda _, dt: np.empty(_BIAS_TILE_MAX, dt))
    tile[...] = bias
    return tile.reshape(-1)


@functools.cache
def _no_bias(dt: np.dtype) -> np.ndarray:
    """The empty bias that tells a compiled loop to evaluate f(x).  (Left
    writeable: numba compiles read-only arrays as another type.)"""
    return np.empty(0, dt)


def _bias_for(xw: np.ndarray, bias) -> np.ndarray:
    """``bias`` as a contiguous vector of ``xw``'s dtype along its last axis."""
    if xw.ndim == 0 or np.shape(bias) != xw.shape[-1:]:
        raise ValueError(f"bias has shape {np.shape(bias)}, expected {xw.shape[-1:]}")
    return np.ascontiguousarray(bias, dtype=xw.dtype)


# --------------------------------------------------------------------------
# Activation objects
# --------------------------------------------------------------------------

class Activation:
    """An activation function bound to validated parameters.

    Attributes:
        name: Canonical name, e.g. ``"leaky_ReLU"``.
        params: Resolved parameters including defaults (a fresh dict).
        output_range: Closed interval ``(low, high)`` containing every output
            when both bounds are finite, else None.
    """

    __slots__ = ("_spec", "_params", "_range")

    def __init__(self, spec: _Spec, params: dict[str, Any]):
        object.__setattr__(self, "_spec", spec)
        object.__setattr__(self, "_params", dict(params))
        rng = spec.output_range
        if callable(rng):
            rng = rng(**params)
            if rng is not None:
                rng = (float(rng[0]), float(rng[1]))
        object.__setattr__(self, "_range", rng)

    def __setattr__(self, key, value):
        raise AttributeError("Activation objects are immutable")

    def __delattr__(self, key):
        raise AttributeError("Activation objects are immutable")

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    @property
    def output_range(self) -> Range | None:
        return self._range

    @property
    def fn(self) -> Callable:
        """The underlying registered function."""
        return self._spec.fn

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None, *,
                 bias: np.ndarray | None = None) -> np.ndarray:
        """Apply the activation; write into ``out`` (which may be ``x``) if given.

        With ``bias`` (shape ``(x.shape[-1],)``) the result is act(x + bias),
        the sum rounded to the result's dtype first, in one pass over memory
        where a compiled loop is available: a layer's ``u = x @ w + b`` and
        its activation, without the separate pass for ``+ b``.
        """
        spec = self._spec
        if spec.kernel is None:
            return self._call_user(x if bias is None else np.add(x, bias), out)
        xw, ow, final = _begin(x, out)
        b = None if bias is None else _bias_for(xw, bias)
        _run(spec, self._params, xw, ow, b)
        return _end(ow, final)

    forward = __call__

    def _call_user(self, x, out):
        a = np.asarray(x)
        _, res = _work_dtype(a.dtype)
        if a.dtype.kind in "biu":
            a = a.astype(np.float64)
        y = np.asarray(self._spec.fn(a, **self._params))
        if y.shape != a.shape:
            raise ValueError(f"activation {self.name} returned shape {y.shape} "
                             f"for input of shape {a.shape}")
        if out is None:
            return y.astype(res, copy=False)
        if not isinstance(out, np.ndarray) or out.shape != a.shape or out.dtype != res:
            raise ValueError(f"out must be an array of shape {a.shape} and dtype {res}")
        np.copyto(out, y, casting="unsafe")
        return out

    def __repr__(self) -> str:
        inner = ", ".join([self.name] + [f"{k}={v!r}" for k, v in self._params.items()])
        return f"Activation({inner})"

    def __eq__(self, other):
        if not isinstance(other, Activation):
            return NotImplemented
        return self._spec is other._spec and self._params == other._params

    def __hash__(self):
        return hash((self._spec.name, tuple(sorted(self._params.items()))))

    def __reduce__(self):
        return (_rebuild, (self.name, dict(self._params)))


# --------------------------------------------------------------------------
# Lookup and parameter validation
# --------------------------------------------------------------------------

def _rebuild(name: str, params: dict) -> "Activation":
    return get_act(name, **params)


def activation_names() -> list[str]:
    """Canonical names of all registered activations, in registry order."""
    return list(_REGISTRY)


def _resolve(name: str) -> _Spec:
    if not isinstance(name, str):
        raise TypeError(f"activation name must be a string, got {type(name).__name__}")
    key = _normalise(name)
    canon = _KEYS.get(key)
    if canon is None:
        close = difflib.get_close_matches(key, list(_KEYS), n=8, cutoff=0.6)
        names: list[str] = []
        for k in close:
            if _KEYS[k] not in names:
                names.append(_KEYS[k])
        hint = f"; closest: {', '.join(names[:3])}" if names else ""
        raise ValueError(f"unknown activation {name!r}{hint}; "
                         f"allowed: {', '.join(_REGISTRY)}")
    return _REGISTRY[canon]


def _accepted(spec: _Spec) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items())


def _coerce(spec: _Spec, key: str, value: Any) -> Any:
    default = spec.defaults[key]

    def bad(kind: str) -> TypeError:
        return TypeError(f"{spec.name} parameter {key!r} must be {kind}, got "
                         f"{type(value).__name__} {value!r}; accepted: {_accepted(spec)}")

    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise bad("a bool")
        return bool(value)
    if isinstance(default, numbers.Integral):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise bad("an integer")
        return int(value)
    if isinstance(default, numbers.Real):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise bad("a real number")
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{spec.name} parameter {key!r} must be finite, got "
                             f"{value!r}; accepted: {_accepted(spec)}")
        return v
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    return value


def get_act(name: str, **act_dic) -> Activation:
    """Look up an activation by name and bind validated parameters.

    Args:
        name: Any registered spelling (case, ``_`` and ``-`` are ignored).
        **act_dic: Parameters; missing ones take the function's defaults.

    Returns:
        An immutable :class:`Activation`.

    Raises:
        ValueError: Unknown name, or an invalid parameter value.
        TypeError: Unknown parameter, or a parameter of the wrong type.
    """
    spec = _resolve(name)
    if not spec.defaults and act_dic:
        raise TypeError(f"{spec.name} takes no parameters; got "
                        f"{', '.join(repr(k) for k in act_dic)}")
    for key in act_dic:
        if key not in spec.defaults:
            raise TypeError(f"{spec.name} got unexpected parameter {key!r}; "
                            f"accepted: {_accepted(spec)}")
    params = dict(spec.defaults)
    for key, value in act_dic.items():
        params[key] = _coerce(spec, key, value)
    if spec.check is not None:
        problem = spec.check(**params)
        if problem:
            raise ValueError(f"{spec.name} {problem}; accepted: {_accepted(spec)}")
    return Activation(spec, params)


def activation_table_markdown() -> str:
    """Markdown table of every activation: name, aliases, parameters, formula, range."""
    rows = ["| name | aliases | parameters | formula | output range |",
            "| --- | --- | --- | --- | --- |"]

    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    for spec in _REGISTRY.values():
        aka = ", ".join(f"`{a}`" for a in spec.aliases) or "-"
        params = ", ".join(f"`{k}={v!r}`" for k, v in spec.defaults.items()) or "-"
        rng = spec.output_range
        if callable(rng):
            rng = rng(**spec.defaults)
        rng_s = "unbounded" if rng is None else f"[{rng[0]:g}, {rng[1]:g}]"
        rows.append(f"| `{spec.name}` | {aka} | {params} | {cell(spec.formula or '')} "
                    f"| {rng_s} |")
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------
# Numerical helpers (kernels run under np.errstate(all="ignore"))
# --------------------------------------------------------------------------

_F64 = np.dtype(np.float64)
_VELTKAMP = 134217729.0  # 2**27 + 1


def _is_pow2(v: float) -> bool:
    if v == 0.0:
        return True
    m, _ = math.frexp(abs(v))
    return m == 0.5


def _split_scalar(b: float) -> tuple[float, float]:
    c = _VELTKAMP * b
    hi = c - (c - b)
    return hi, b - hi


def _two_prod_err(a: np.ndarray, p: np.ndarray, b: float) -> np.ndarray:
    """Exact rounding error ``a*b - p`` of the float64 product ``p = fl(a*b)``.

    Dekker's algorithm; requires |a*b| well below the overflow threshold.
    """
    bh, bl = _split_scalar(b)
    c = a * _VELTKAMP
    ah = c - (c - a)
    al = a - ah
    err = ah * bh
    err -= p
    t = ah * bl
    err += t
    np.multiply(al, bh, out=t)
    err += t
    np.multiply(al, bl, out=t)
    err += t
    return err


def _two_prod_arr(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p, e) with p = fl(a*b) and a*b = p + e exactly (both arrays)."""
    p = a * b
    c = a * _VELTKAMP
    ah = c - (c - a)
    al = a - ah
    c = b * _VELTKAMP
    bh = c - (c - b)
    bl = b - bh
    e = ah * bh - p
    e += ah * bl
    e += al * bh
    e += al * bl
    return p, e


def _exp_neg_abs_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = exp(-|x|) (never overflows); returns out."""
    np.abs(x, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    return out


def _x_exp_tail(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """x * exp(scale*x) without a subnormal intermediate (scale a power of two).

    Only called where scale*x < 0: at x = +-inf the limit is 0, not inf * 0.
    """
    t = np.multiply(x, 0.5 * scale)
    np.exp(t, out=t)
    big = float(np.finfo(x.dtype).max)
    r = np.clip(x, -big, big)
    r *= t
    r *= t
    return r


def _max0_into(x: np.ndarray, out: np.ndarray) -> None:
    """out = max(x, 0) (NaN propagates); against a zeros array when possible,
    else clip (np.maximum with a scalar is the slowest form)."""
    z = _zeros(x)
    if z is not None:
        np.maximum(x, z, out=out)
    else:
        np.clip(x, 0.0, np.inf, out=out)


def _min0_into(x: np.ndarray, out: np.ndarray) -> None:
    """out = min(x, 0) (NaN propagates); see ``_max0_into``."""
    z = _zeros(x)
    if z is not None:
        np.minimum(x, z, out=out)
    else:
        np.clip(x, -np.inf, 0.0, out=out)


def _tail_mask(x: np.ndarray, below: float):
    """Boolean mask of ``x < below``, or None if it is empty."""
    # a min reduction settles the common case without allocating a mask
    # (a NaN makes the comparison False and falls through to the mask)
    if x.size == 0 or x.min() >= below:
        return None
    m = x < below
    return m if m.any() else None


# --------------------------------------------------------------------------
# Parameter checks (return an error fragment or None)
# --------------------------------------------------------------------------

def _check_lambda(lambda_):
    if lambda_ < 0:
        return f"parameter 'lambda_' must be >= 0, got {lambda_!r}"
    return None


def _check_celu(alpha):
    if alpha <= 0:
        return f"parameter 'alpha' must be > 0, got {alpha!r}"
    return None


def _check_gelu(approximate):
    if approximate not in ("none", "tanh"):
        return f"parameter 'approximate' must be 'none' or 'tanh', got {approximate!r}"
    return None


def _check_rrelu(lower, upper):
    if lower > upper:
        return f"needs lower <= upper, got lower={lower!r}, upper={upper!r}"
    return None


# --------------------------------------------------------------------------
# Built-in activations (seed set first, in the seed's order)
# --------------------------------------------------------------------------

@_builtin(_ELEMENTWISE, aliases=("heaviside", "binary_step"), output_range=(0.0, 1.0),
          formula="1 if x > 0 else 0",
          compiled=lambda jit, dt: (jit.step, dt.type(1.0), dt.type(0.0)), cheap=True)
def step(x, out):
    """Step function: step(x) = 1 if x > 0 else 0.

    The value at 0 (and -0.0) is 0, like ``x > 0`` in the seed.  NaN gives NaN.
    """
    m = np.greater(x, 0.0, out=_scratch(x, 0, np.bool_))
    nan = np.isnan(x, out=_scratch(x, 1, np.bool_))
    np.copyto(out, m, casting="unsafe")
    if nan.any():
        out[nan] = np.nan


@_builtin(_ELEMENTWISE, aliases=("linear",), formula="x",
          compiled=lambda jit, dt: (jit.identity,), cheap=True)
def identity(x, out):
    """Identity: identity(x) = x."""
    if out is not x:
        np.copyto(out, x)


@_builtin(_ELEMENTWISE, formula="(sqrt(x^2 + 1) - 1) / 2 + x")
def bent_identity(x, out):
    """Bent identity: bent_identity(x) = (sqrt(x^2 + 1) - 1) / 2 + x.

    Computed as x*(x/(hypot(x, 1) + 1))/2 + x, which avoids the
    cancellation in sqrt(x^2+1) - 1 near 0.  np.hypot is a scalar libm loop
    (4-18 ns per element), so hypot(x, 1) = max(sqrt(min(|x|, L)^2 + 1), |x|)
    with L = 2**ceil((p+1)/2) (p mantissa bits): from L on, x^2 + 1 rounds
    to x^2, hypot(x, 1) rounds to |x|, and the max picks it (x^2 cannot
    overflow).  The product is formed as a*(a/(hypot + 1)) with a = |x|
    capped at the largest finite number: the same value for finite x, and a
    finite ratio (1) for x = +-inf instead of inf/inf = NaN, so the result
    follows x to +-inf (NaN still propagates).
    """
    a = _scratch(x, 0)
    np.abs(x, out=a)
    np.minimum(a, np.finfo(x.dtype).max, out=a)
    t = _scratch(x, 1)
    np.clip(a, 0.0, 2.0 ** 27 if x.dtype == _F64 else 2.0 ** 13, out=t)
    t *= t
    t += 1.0
    np.sqrt(t, out=t)
    np.maximum(t, a, out=t)
    t += 1.0
    np.divide(a, t, out=t)
    t *= a
    t *= 0.5
    np.add(t, x, out=out)


def _exp_limit(dt: np.dtype) -> float:
    """Below -limit, exp(-x) may overflow and exp(x) may be subnormal."""
    return 700.0 if dt == _F64 else 80.0


def _sigmoid_into(x: np.ndarray, out: np.ndarray) -> None:
    """out = 1 / (1 + exp(-x)) (out may be x); no scratch.

    Accurate to a few ulps wherever exp(-x) is finite: the quotient has no
    cancellation.  Below -``_exp_limit`` (where exp(-x) may overflow) the
    result is exp(x) to working precision.
    """
    tail = _tail_mask(x, -_exp_limit(x.dtype))
    xt = x[tail] if tail is not None else None
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1.0
    np.divide(1.0, out, out=out)
    if xt is not None:
        out[tail] = np.exp(xt)


@_builtin(_ELEMENTWISE, aliases=("logistic", "expit"), output_range=(0.0, 1.0),
          formula="1 / (1 + exp(-x))",
          compiled=lambda jit, dt: (jit.sigmoid if dt == _F64 else jit.sigmoid_f32,))
def sigmoid(x, out):
    """Logistic sigmoid: sigmoid(x) = 1 / (1 + exp(-x)).

    Evaluated as written (no cancellation), and as exp(x) where exp(-x)
    would overflow: relative accuracy in both tails, including subnormal
    results.
    """
    _sigmoid_into(x, out)


def _softplus_parts(x: np.ndarray) -> np.ndarray:
    """log1p(exp(-|x|)) in scratch slot 0 (uses slots 0-2).

    np.log1p where its loop is vectorised.  Otherwise log1p(e) for
    0 <= e <= 1 as log(u) - d/u with u = fl(1 + e) and d = (u - 1) - e the
    exact rounding error of u (log(1 + e) = log(u - d)), which is accurate to
    a few ulps and much cheaper than a scalar log1p.
    """
    e = _exp_neg_abs_into(x, _scratch(x, 1))
    if _native("log1p", x.dtype):
        return np.log1p(e, out=_scratch(x, 0))
    u = _scratch(x, 2)
    np.add(e, 1.0, out=u)
    t = _scratch(x, 0)
    np.subtract(u, 1.0, out=t)
    t -= e                      # d, exact
    t /= u
    np.log(u, out=u)
    np.subtract(u, t, out=t)
    return t


def _softplus_compiled(jit, dt: np.dtype, sign: float) -> tuple:
    # sign 1: softplus; -1: log_sigmoid (see layers.compiled._softplus)
    return (jit.softplus, sign) if dt == _F64 else (jit.softplus_f32, np.float32(sign))


@_builtin(_ELEMENTWISE, aliases=("logsigmoid",), formula="log(1 / (1 + exp(-x)))",
          compiled=lambda jit, dt: _softplus_compiled(jit, dt, -1.0))
def log_sigmoid(x, out):
    """Log-sigmoid: log_sigmoid(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|))."""
    t = _softplus_parts(x)
    _min0_into(x, out)
    out -= t


# Cephes' rational tanh(x) = x + x z P(z)/Q(z), z = x^2, for |x| < 0.625
_TANH_P = (-9.64399179425052238628e-1, -9.92877231001918586564e1,
           -1.61468768441708447952e3)
_TANH_Q = (1.12811678491632931402e2, 2.23548839060100448583e3,
           4.84406305325125486048e3)


def _tanh_into(x: np.ndarray, out: np.ndarray) -> None:
    """out = tanh(x) (out may be x); the float64 fallback uses scratch slots 0-4.

    np.tanh unless its float64 loop is scalar (see ``_native``); then
    tanh(x) = (1 - e)/(1 + e), e = exp(-2x) (x clipped to [-20, 20], where
    tanh is +-1 to double precision), and for |x| < 0.625, where that form
    cancels, a rational approximation.  The two are blended arithmetically:
    big + m * (small - big) is exactly ``small`` where m = 1 because both
    approximate the same value (Sterbenz).
    """
    if x.dtype != _F64 or _native("tanh", x.dtype):
        np.tanh(x, out=out)
        return
    xc = _scratch(x, 0)
    np.clip(x, -20.0, 20.0, out=xc)
    e = _scratch(x, 1)
    np.multiply(xc, -2.0, out=e)
    np.exp(e, out=e)
    big = _scratch(x, 2)
    np.subtract(1.0, e, out=big)
    e += 1.0
    big /= e
    z = e
    np.multiply(xc, xc, out=z)
    p = _scratch(x, 3)
    np.multiply(z, _TANH_P[0], out=p)
    p += _TANH_P[1]
    p *= z
    p += _TANH_P[2]
    q = out
    np.add(z, _TANH_Q[0], out=q)
    q *= z
    q += _TANH_Q[1]
    q *= z
    q += _TANH_Q[2]
    p /= q
    p *= z
    p *= xc
    p += xc                      # small-|x| value
    p -= big
    m = _scratch(x, 4, np.bool_)
    np.abs(xc, out=z)
    np.less(z, 0.625, out=m)
    p *= m
    np.add(big, p, out=out)


@_builtin(_ELEMENTWISE, output_range=(-1.0, 1.0), formula="tanh(x)",
          compiled=lambda jit, dt: (jit.tanh,) if dt == _F64 else None)
def tanh(x, out):
    """Hyperbolic tangent: tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x)).

    float64 runs compiled when numba is installed (NumPy's float64 loop is
    slower than PyTorch's on CPUs without AVX-512; its float32 loop is not).
    """
    _tanh_into(x, out)


_TS_LIMIT = 1.5


# x - tanh(x) = x z A(z) / B(z), z = x^2, for |x| <= 1.5: the convergent of
# Lambert's continued fraction tanh(x) = x / (1 + z/(3 + z/(5 + ...))) of
# depth 11 (float64) or 6 (float32), expanded into polynomials (normalised
# to B(0) = 1).  Every coefficient is positive, so Horner's scheme has no
# cancellation; the truncation error at |x| = 1.5 is about 1e-19 (depth 11)
# and 6e-10 = 0.005 float32 eps (depth 6) relative.
_TS_A64 = (0.3333333333333333, 0.02608695652173913, 0.0005521048999309869, 4.035854531659261e-06, 9.249475626415419e-09, 3.1622138893727926e-12)
_TS_B64 = (1.0, 0.4782608695652174, 0.031055900621118012, 0.0006102212051868803, 4.273257739403923e-06, 9.496128309786497e-09, 3.1622138893727926e-12)
_TS_A32 = (0.3333333333333333, 0.020512820512820513, 0.0001998001998001998)
_TS_B32 = (1.0, 0.46153846153846156, 0.023310023310023312, 0.0002072002072002072)


def _horner_into(coef, v: np.ndarray, acc: np.ndarray) -> np.ndarray:
    np.multiply(v, coef[-1], out=acc)
    acc += coef[-2]
    for c in coef[-3::-1]:
        acc *= v
        acc += c
    return acc


@_builtin(_ELEMENTWISE, aliases=("tanhshrink",), formula="x - tanh(x)",
          compiled=lambda jit, dt: (jit.tanh_shrink if dt == _F64 else jit.tanh_shrink_f32,))
def tanh_shrink(x, out):
    """Tanh shrink: tanh_shrink(x) = x - tanh(x).

    For |x| < 1.5 the subtraction would cancel (x - tanh(x) ~ x^3/3), so that
    range uses a convergent of tanh's continued fraction, which has only
    positive terms (see ``_TS_A64``).  Both forms are evaluated everywhere (x
    clipped to +-1.5 for the rational) and blended arithmetically:
    small + (|x| >= 1.5) * (big - small) is exactly ``small`` inside.
    Compiled when numba is installed.
    """
    f64 = x.dtype == _F64
    big = _scratch(x, 5)
    _tanh_into(x, big)                   # slots 0-4
    np.subtract(x, big, out=big)
    xc = _scratch(x, 0)
    np.clip(x, -_TS_LIMIT, _TS_LIMIT, out=xc)
    z = _scratch(x, 1)
    np.multiply(xc, xc, out=z)
    num = _horner_into(_TS_A64 if f64 else _TS_A32, z, _scratch(x, 2))
    den = _horner_into(_TS_B64 if f64 else _TS_B32, z, _scratch(x, 3))
    num *= z
    num *= xc
    num /= den                           # small-|x| value
    # |x| >= 1.5 as z = xc^2 >= 2.25 (saves an abs pass; at the boundary
    # either form is accurate)
    m = z
    np.greater_equal(z, _TS_LIMIT ** 2, out=m, casting="unsafe")
    big -= num
    big *= m
    np.add(num, big, out=out)


def _clip_compiled(jit, dt: np.dtype, lo: float, hi: float) -> tuple:
    return (jit.clip, dt.type(lo), dt.type(hi))


@_builtin(_ELEMENTWISE, aliases=("hardtanh",), output_range=(-1.0, 1.0),
          formula="clip(x, -1, 1)", compiled=lambda jit, dt: _clip_compiled(jit, dt, -1.0, 1.0), cheap=True)
def hard_tanh(x, out):
    """Hard tanh: hard_tanh(x) = clip(x, -1, 1)."""
    np.clip(x, -1.0, 1.0, out=out)


@_builtin(_ELEMENTWISE, aliases=("relu",), formula="max(x, 0)",
          compiled=lambda jit, dt: _clip_compiled(jit, dt, 0.0, np.inf), cheap=True)
def ReLU(x, out):
    """Rectified linear unit: ReLU(x) = max(x, 0)."""
    _max0_into(x, out)


@_builtin(_ELEMENTWISE, aliases=("relu_6",), output_range=(0.0, 6.0),
          formula="min(max(x, 0), 6)", compiled=lambda jit, dt: _clip_compiled(jit, dt, 0.0, 6.0), cheap=True)
def ReLU6(x, out):
    """ReLU capped at 6: ReLU6(x) = min(max(x, 0), 6)."""
    np.clip(x, 0.0, 6.0, out=out)


def _row_sum(a: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Sums over the last axis of ``a`` (or of ``a * w``), keepdims.

    einsum's reduction is about twice as fast as ``np.sum`` here and, being
    a fixed per-row loop, gives results independent of the chunking.
    """
    if w is None:
        return np.einsum("...j->...", a)[..., None]
    return np.einsum("...j,...j->...", a, w)[..., None]


def _shifted_exp_into(x: np.ndarray, m: np.ndarray, out: np.ndarray,
                      safe: bool) -> np.ndarray:
    """out = exp(x - m) with x - m carried exactly; returns d = fl(x - m).

    fl(x - m) can be off by half an ulp of a large difference, which exp turns
    into a relative error of |x - m| ulps; TwoSum recovers the rounding error
    e and exp(d + e) = exp(d) * (1 + e).  An overflowing difference makes e
    NaN (exp(d) is 0 there); ``safe`` clamps e for that case, otherwise the
    caller detects it through a NaN row sum and calls again with safe=True.
    Scratch slots 0, 1 and 3 (``d`` is slot 0); ``out`` must not be ``x``.
    """
    d = _scratch(x, 0)
    np.subtract(x, m, out=d)
    # TwoSum of x and -m: e = (x - (d - bb)) + (-m - bb) with bb = d - x
    bb = _scratch(x, 1)
    np.subtract(d, x, out=bb)
    err = _scratch(x, 3)
    np.subtract(d, bb, out=err)
    np.subtract(x, err, out=err)
    np.subtract(np.negative(m), bb, out=bb)
    bb += err
    if safe:
        np.fmax(bb, -1.0, out=bb)
    np.exp(d, out=out)
    bb += 1.0
    out *= bb
    return d


def _row_max(x: np.ndarray) -> np.ndarray:
    """Maxima over the last axis (keepdims; NaN propagates).

    For C-contiguous input, maximum.reduceat over the flat array is about
    twice as fast as np.max(axis=-1), whose per-row overhead dominates on
    short rows.
    """
    cols = x.shape[-1]
    if not x.flags.c_contiguous or x.ndim < 2 or x.size == 0:
        return np.max(x, axis=-1, keepdims=True)
    flat = x.reshape(-1)
    m = np.maximum.reduceat(flat, np.arange(0, flat.size, cols))
    return m.reshape(x.shape[:-1] + (1,))


def _fast_row_limit(x: np.ndarray) -> float:
    """Bound on |x| under which exp(x) and exp(-x) are normal numbers and a
    row sum of them cannot overflow."""
    big = math.log(float(np.finfo(x.dtype).max)) - math.log(max(1, x.shape[-1])) - 1.0
    return min(_exp_limit(x.dtype), big)


def _by_rows(x: np.ndarray, out: np.ndarray, fast: Callable, exact: Callable,
             with_max: bool = False) -> None:
    """``fast(x, out)`` on every row, then ``exact`` again on the rows with an
    entry beyond ``_fast_row_limit`` (or a NaN), where ``fast`` is not valid.

    Two whole-array reductions settle the common case; the choice is made
    per row, so results do not depend on the chunking.  ``with_max``: fast
    takes the row maxima as a third argument (and they replace a reduction).
    """
    if x.size == 0:
        return
    lim = _fast_row_limit(x)
    m = _row_max(x) if with_max else None
    top = m.max() if with_max else x.max()
    bad = None
    if not (x.min() >= -lim and top <= lim):   # also true with a NaN
        row_max = m[..., 0] if with_max else np.max(x, axis=-1)
        bad = ~((np.min(x, axis=-1) >= -lim) & (row_max <= lim))
        xb = x[bad]              # a copy, taken before out (maybe x) is written
    if with_max:
        fast(x, out, m)
    else:
        fast(x, out)
    if bad is not None and xb.size:
        ob = np.empty_like(xb)
        exact(xb, ob)
        out[bad] = ob


def _softmax_fast(x: np.ndarray, out: np.ndarray, neg: bool) -> None:
    """exp(+-x) / row sum for rows with |x| <= ``_fast_row_limit``: every
    exponential is a normal number, accurate to an ulp with no argument
    rounding, so no shift is needed.  Scratch slot 0."""
    e = _scratch(x, 0)
    if neg:
        np.negative(x, out=e)
        np.exp(e, out=e)
    else:
        np.exp(x, out=e)
    np.divide(e, _row_sum(e), out=out)


def _softmax_exact(x: np.ndarray, out: np.ndarray, neg: bool) -> None:
    """Any rows: shift by the row maximum (see ``_shifted_exp_into``).
    Scratch slots 0-4.  softmin(x) = softmax(-x) (negation is exact)."""
    if neg:
        xn = _scratch(x, 4)
        np.negative(x, out=xn)
        x = xn
    m = _row_max(x)
    e = _scratch(x, 2)
    for safe in (False, True):
        _shifted_exp_into(x, m, e, safe)
        s = _row_sum(e)
        if safe or not np.isnan(s).any():
            break
    np.divide(e, s, out=out)


def _softmax_compiled(jit, dt: np.dtype, neg: bool) -> tuple:
    return (jit.softmax_f64 if dt == _F64 else jit.softmax_f32, neg)


def _softmax_into(x: np.ndarray, out: np.ndarray, neg: bool) -> None:
    _by_rows(x, out, functools.partial(_softmax_fast, neg=neg),
             functools.partial(_softmax_exact, neg=neg))


@_builtin(_ROWWISE, output_range=(0.0, 1.0),
          formula="exp(x_i) / sum_j exp(x_j) over the last axis",
          compiled=lambda jit, dt: _softmax_compiled(jit, dt, neg=False))
def softmax(x, out):
    """Softmax over the last axis: softmax(x)_i = exp(x_i) / sum_j exp(x_j).

    Rows whose entries are all moderate (|x| <= 80 in float32, 700 in
    float64, less for very long rows) are evaluated as written, since each
    exp(x_j) is then accurate to an ulp; other rows subtract the row maximum
    first, with the subtraction's rounding error carried into the
    exponential.  A row with a NaN becomes all NaN.
    """
    _softmax_into(x, out, neg=False)


@_builtin(_ROWWISE, output_range=(0.0, 1.0),
          formula="exp(-x_i) / sum_j exp(-x_j) over the last axis",
          compiled=lambda jit, dt: _softmax_compiled(jit, dt, neg=True))
def softmin(x, out):
    """Softmin over the last axis: softmin(x)_i = exp(-x_i) / sum_j exp(-x_j) = softmax(-x)_i."""
    _softmax_into(x, out, neg=True)


def _log1p_rest(total: np.ndarray, s: np.ndarray) -> np.ndarray:
    """log(sum_j exp(x_j - m)) per row, in place in ``s``, from the sum
    ``total`` over all entries and ``s`` over the non-maximal ones."""
    # exact count of maximal entries minus one; 0 for a unique maximum
    ties = np.subtract(total, s)
    np.rint(ties, out=ties)
    ties -= 1.0
    s += ties
    np.log1p(s, out=s)
    return s


def _log_softmax_fast(x: np.ndarray, out: np.ndarray, m: np.ndarray) -> None:
    """For rows with |x| <= ``_fast_row_limit`` and maxima m (scratch slots
    0-1): exp(x_j - m) = exp(x_j) * exp(-m), a product of two exponentials of
    exact arguments, so the difference x_j - m need not be carried exactly."""
    e = _scratch(x, 0)
    np.exp(x, out=e)
    total = _row_sum(e)
    d = out
    np.subtract(x, m, out=d)      # x is not read after this
    keep = _scratch(x, 1)
    np.less(d, 0.0, out=keep, casting="unsafe")
    s = _row_sum(e, keep)         # without the maximal entries
    em = np.exp(np.negative(m))
    total *= em
    s *= em
    d -= _log1p_rest(total, s)


def _log_softmax_exact(x: np.ndarray, out: np.ndarray) -> None:
    """Any rows (scratch slots 0-3): as ``_softmax_exact``."""
    m = _row_max(x)
    e = _scratch(x, 2)
    for safe in (False, True):
        d = _shifted_exp_into(x, m, e, safe)
        total = _row_sum(e)
        if safe or not np.isnan(total).any():
            break
    keep = _scratch(x, 1)
    np.less(d, 0.0, out=keep, casting="unsafe")
    s = _log1p_rest(total, _row_sum(e, keep))  # without the maximal entries
    np.subtract(d, s, out=out)


@_builtin(_ROWWISE, aliases=("logsoftmax",),
          formula="x_i - log(sum_j exp(x_j)) over the last axis",
          compiled=lambda jit, dt: (jit.log_softmax_f64 if dt == _F64 else jit.log_softmax_f32,))
def log_softmax(x, out):
    """Log-softmax over the last axis: log_softmax(x)_i = x_i - log(sum_j exp(x_j)).

    Computed as (x_i - m) - log1p(s) with m the row maximum and s the sum of
    exp(x_j - m) over the non-maximal entries, so entries near the maximum
    keep full relative accuracy (log(1 + tiny) is not rounded to 0).  For
    rows of moderate entries (as in ``softmax``) exp(x_j - m) is formed as
    exp(x_j) * exp(-m).  The compiled loop (see ``compiled_kernels``) always
    shifts, carrying x_j - m exactly as ``softmax`` does.
    """
    _by_rows(x, out, _log_softmax_fast, _log_softmax_exact, with_max=True)


@_builtin(_ELEMENTWISE, formula="log(1 + exp(x))",
          compiled=lambda jit, dt: _softplus_compiled(jit, dt, 1.0))
def softplus(x, out):
    """Softplus: softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))."""
    t = _softplus_parts(x)
    _max0_into(x, out)
    out += t


def _softsign_limit(dt: np.dtype) -> float:
    return 2.0 ** 53 if dt == _F64 else 2.0 ** 24


@_builtin(_ELEMENTWISE, output_range=(-1.0, 1.0), formula="x / (1 + |x|)",
          compiled=lambda jit, dt: (jit.softsign, dt.type(_softsign_limit(dt)), dt.type(1.0)), cheap=True)
def softsign(x, out):
    """Softsign: softsign(x) = x / (1 + |x|)."""
    # Beyond 2**p (p = mantissa bits) 1 + |x| rounds, which would make the
    # result non-monotone; there the true value rounds to +-1 or its
    # neighbour, and clipping x to +-2**p keeps it monotone (and inf -> 1).
    lim = _softsign_limit(x.dtype)
    xc = _scratch(x, 0)
    np.clip(x, -lim, lim, out=xc)
    t = _scratch(x, 1)
    np.abs(xc, out=t)
    t += 1.0
    np.divide(xc, t, out=out)


def _mish_tail(x: np.ndarray) -> float:
    return -40.0 if x.dtype == _F64 else -20.0


@_builtin(_ELEMENTWISE, formula="x * tanh(softplus(x))")
def Mish(x, out):
    """Mish: Mish(x) = x * tanh(log(1 + exp(x))).

    One exponential e = exp(-|x|): tanh(softplus(x)) = (1 + 2e)/(1 + 2e + 2e^2)
    for x >= 0 and (e^2 + 2e)/(e^2 + 2e + 2) for x < 0.  For very negative x,
    where the result is x*exp(x) to working precision, it is evaluated as
    (x*exp(x/2))*exp(x/2) so that no subnormal intermediate loses digits.
    """
    tail = _tail_mask(x, _mish_tail(x))
    xt = x[tail] if tail is not None else None
    e = _exp_neg_abs_into(x, _scratch(x, 0))
    e2 = _scratch(x, 1)
    np.multiply(e, e, out=e2)
    pos = _scratch(x, 2)
    np.greater_equal(x, 0.0, out=pos, casting="unsafe")
    num = np.maximum(e2, pos, out=_scratch(x, 3))  # 1 for x >= 0, e^2 for x < 0
    num += e
    num += e
    np.subtract(1.0, pos, out=pos)     # 1 for x < 0
    np.maximum(e2, pos, out=pos)       # e^2 for x >= 0, 1 for x < 0
    pos *= 2.0
    pos += num
    np.divide(num, pos, out=num)
    np.multiply(x, num, out=out)
    if xt is not None:
        out[tail] = _x_exp_tail(xt)


@_builtin(_ELEMENTWISE, aliases=("tanh_exp",), formula="x * tanh(exp(x))")
def tanhExp(x, out):
    """TanhExp: tanhExp(x) = x * tanh(exp(x)).

    For very negative x (where tanh(exp(x)) = exp(x) to working precision) the
    product is formed as (x*exp(x/2))*exp(x/2), avoiding subnormal exp(x).
    """
    tail = _tail_mask(x, _mish_tail(x))
    xt = x[tail] if tail is not None else None
    t = _scratch(x, 5)
    np.exp(x, out=t)
    _tanh_into(t, t)                     # slots 0-4
    np.multiply(x, t, out=out)
    if xt is not None:
        out[tail] = _x_exp_tail(xt)


@functools.lru_cache(maxsize=64)
def _crossing(slope: float, offset: float, dt: np.dtype) -> tuple[float, float]:
    """(x0, c0): x0 the ``dt`` number nearest to the zero crossing -offset/slope
    and c0 = slope*x0 + offset rounded to ``dt``; (0, offset) when the
    plain form is already exact enough or the crossing is not representable
    (see ``hard_sigmoid``)."""
    from fractions import Fraction
    plain = (0.0, offset)
    if (not (math.isfinite(slope) and math.isfinite(offset)) or slope == 0.0
            or offset == 0.0 or _is_pow2(slope)):
        return plain
    t = -Fraction(offset) / Fraction(slope)
    with np.errstate(over="ignore"):
        near = dt.type(float(t))
        cands = [near, np.nextafter(near, dt.type(-np.inf)), np.nextafter(near, dt.type(np.inf))]
    cands = [c for c in cands if np.isfinite(c)]
    if not cands:
        return plain
    # the nearest of the neighbours (rounding via float64 may round twice)
    x0 = min(cands, key=lambda c: abs(Fraction(float(c)) - t))
    c0 = Fraction(slope) * Fraction(float(x0)) + Fraction(offset)
    with np.errstate(under="ignore"):
        return float(x0), float(dt.type(float(c0)))


def _hard_sigmoid_compiled(jit, dt: np.dtype, slope: float, offset: float) -> tuple:
    s = float(dt.type(slope))
    x0, c0 = _crossing(s, float(dt.type(offset)), dt)
    return (jit.hard_sigmoid, *(dt.type(v) for v in (s, x0, c0, 0.0, 1.0)))


@_builtin(_ELEMENTWISE, aliases=("hardsigmoid",), output_range=(0.0, 1.0),
          formula="clip(slope * x + offset, 0, 1)", compiled=_hard_sigmoid_compiled, cheap=True)
def hard_sigmoid(x, out, slope=0.2, offset=0.5):
    """Hard sigmoid: hard_sigmoid(x) = clip(slope * x + offset, 0, 1).

    The defaults are the seed's (Keras 2) slope 0.2; PyTorch's ``hardsigmoid``
    spelling maps to this same entry, so for PyTorch's curve pass
    ``slope=0.16666666666666666`` (offset 0.5).

    Evaluated as r = fl(fl(slope * d) + c0), d = x - x0, in the input dtype
    (unit roundoff u), with x0 the representable number nearest to the zero
    crossing t = -offset/slope and c0 = slope*x0 + offset (precomputed,
    rounded once), so v = slope*x + offset = slope*d + c0 exactly.  As x0 is
    the number nearest to t, |c0| = |slope||x0 - t| <= |slope||x - t| = |v|
    for every representable x, hence |slope*d| = |v - c0| <= 2|v|.  The
    roundings of d, of the product, of c0 and of the sum therefore err by at
    most (2u + 2u + u + u)|v| = 3 eps relative (to first order; an
    underflowing c0 or product adds at most half the smallest subnormal),
    also at the zero crossing, where the plain slope*x + offset cancels;
    clipping only lowers the error.  A power-of-two slope (exact product)
    or offset 0 needs no shift (x0 = 0, c0 = offset), nor does a crossing
    beyond the largest finite number (no cancellation within range).
    """
    s = float(x.dtype.type(slope))
    x0, c0 = _crossing(s, float(x.dtype.type(offset)), x.dtype)
    r = _scratch(x, 0)
    np.subtract(x, x0, out=r)
    r *= s
    r += c0
    np.clip(r, 0.0, 1.0, out=out)


@_builtin(_ELEMENTWISE, aliases=("hardshrink",), formula="x if |x| > lambda_ else 0",
          check=_check_lambda,
          compiled=lambda jit, dt, lambda_: (jit.hard_shrink, dt.type(lambda_)), cheap=True)
def hard_shrink(x, out, lambda_=0.5):
    """Hard shrink: hard_shrink(x) = x if |x| > lambda_ else 0."""
    # x * (|x| > lambda_), NaN * 0 being NaN; the mask is written as 0.0/1.0
    # in place because a float * bool multiply converts (2.5x slower)
    keep = _scratch(x, 0)
    np.abs(x, out=keep)
    np.greater(keep, lambda_, out=keep, casting="unsafe")
    np.multiply(x, keep, out=out)


@_builtin(_ELEMENTWISE, aliases=("softshrink",),
          formula="x - clip(x, -lambda_, lambda_)", check=_check_lambda,
          compiled=lambda jit, dt, lambda_: (jit.soft_shrink, dt.type(lambda_)), cheap=True)
def soft_shrink(x, out, lambda_=0.5):
    """Soft shrink: soft_shrink(x) = sign(x) * max(|x| - lambda_, 0) = x - clip(x, -lambda_, lambda_)."""
    t = _scratch(x, 0)
    np.clip(x, -lambda_, lambda_, out=t)
    np.subtract(x, t, out=out)


def _threshold_compiled(jit, dt: np.dtype, threshold: float, value: float) -> tuple:
    if value == threshold:
        return _clip_compiled(jit, dt, threshold, np.inf)
    return (jit.threshold, dt.type(threshold), dt.type(value))


@_builtin(_ELEMENTWISE, formula="x if x > threshold else value", compiled=_threshold_compiled, cheap=True)
def threshold(x, out, threshold=0.0, value=0.0):
    """Threshold: threshold(x) = x if x > threshold else value (NaN stays NaN)."""
    if value == threshold:
        # x if x > threshold else threshold: a clip (NaN propagates)
        np.clip(x, threshold, np.inf, out=out)
        return
    replace = np.less_equal(x, threshold, out=_scratch(x, 0, np.bool_))
    if out is not x:
        np.copyto(out, x)
    np.copyto(out, x.dtype.type(value), where=replace)


def _leaky_into(x: np.ndarray, out: np.ndarray, alpha: float) -> None:
    """out = x if x > 0 else alpha*x (out may be x); scratch slot 0."""
    t = _scratch(x, 0)
    if 0.0 <= alpha <= 1.0:
        # max(x, alpha*x) is the leaky ReLU only for 0 <= alpha <= 1
        np.multiply(x, alpha, out=t)
        np.maximum(x, t, out=out)
    else:
        _min0_into(x, t)
        t *= alpha
        _max0_into(x, out)
        out += t


@_builtin(_ELEMENTWISE, aliases=("lrelu",), formula="x if x > 0 else alpha * x",
          compiled=lambda jit, dt, alpha: (jit.leaky, dt.type(alpha)), cheap=True)
def leaky_ReLU(x, out, alpha=0.01):
    """Leaky ReLU: leaky_ReLU(x) = x if x > 0 else alpha * x.

    The seed computed maximum(alpha*x, x), which equals this only for
    0 <= alpha <= 1 (for alpha > 1 it returns alpha*x for positive x); this
    follows the definition for every alpha.
    """
    _leaky_into(x, out, alpha)


# expm1(t) = t + t^2 Q(t) on [-ln 2, 0] for float32: degree-4 least-squares
# fit (Chebyshev nodes, relative weighting); max relative error 0.71 float32
# eps measured in float32 arithmetic.
_EXPM1_32_Q = (0.4999992608061921, 0.166652431362388, 0.04157526053194201,
               0.008071059695257551, 0.001034784312139516)
_EXPM1_32_L = 0.6931471824645996          # float32(ln 2)


def _expm1_nonpos_into(t: np.ndarray) -> None:
    """t = expm1(t) in place for t <= 0 (or NaN); uses scratch slots 1-3.

    np.expm1 where its loop is vectorised (and always for float64).  The
    float32 fallback: exp(t) - 1, which is
    accurate for t <= -ln 2 (exp(t) <= 1/2), blended with the polynomial
    ``_EXPM1_32_Q`` evaluated at t clipped to [-ln 2, 0]: big + m * (small -
    big) with m = (t >= -ln 2) is exactly ``small`` where m = 1, because
    there the two values are within a factor of 2 of each other (Sterbenz)
    or big is 0, and exactly ``big`` elsewhere.
    """
    if t.dtype == _F64 or _native("expm1", t.dtype):
        np.expm1(t, out=t)
        return
    big = _scratch(t, 1)
    np.exp(t, out=big)
    big -= 1.0
    c = _scratch(t, 2)
    np.clip(t, -_EXPM1_32_L, 0.0, out=c)
    small = _horner_into(_EXPM1_32_Q, c, _scratch(t, 3))
    small *= c
    small *= c
    small += c
    small -= big
    np.greater_equal(t, -_EXPM1_32_L, out=c, casting="unsafe")
    small *= c
    np.add(big, small, out=t)


def _elu_compiled(jit, dt: np.dtype, alpha, divisor=1.0, scale=None) -> tuple:
    # the parameters in x's dtype, as the NumPy kernel below uses them
    params = [dt.type(v) for v in (alpha, divisor, 1.0 if scale is None else scale)]
    return (jit.elu if dt == _F64 else jit.elu_f32, *params)


def _elu_into(x, out, alpha, divisor=1.0, scale=None):
    """out = scale * max(x, 0) + alpha * expm1(min(x, 0) / divisor)."""
    t = _scratch(x, 0)
    _min0_into(x, t)
    if divisor != 1.0:
        t /= divisor
    _expm1_nonpos_into(t)
    t *= alpha
    _max0_into(x, out)
    if scale is not None:
        out *= scale
    out += t


@_builtin(_ELEMENTWISE, formula="x if x > 0 else alpha * (exp(x) - 1)",
          compiled=_elu_compiled)
def ELU(x, out, alpha=1.0):
    """Exponential linear unit: ELU(x) = x if x > 0 else alpha * (exp(x) - 1) (expm1).

    Compiled with numba when installed (``layers.compiled.elu``), as SELU and CELU.
    """
    _elu_into(x, out, alpha)


_SELU_SCALE = 1.0507009873554805
_SELU_ALPHA = 1.6732632423543772


@_builtin(_ELEMENTWISE, formula="scale * (x if x > 0 else alpha * (exp(x) - 1))",
          compiled=lambda jit, dt: _elu_compiled(jit, dt, _SELU_SCALE * _SELU_ALPHA,
                                                 scale=_SELU_SCALE))
def SELU(x, out):
    """Scaled ELU: SELU(x) = scale * (x if x > 0 else alpha * (exp(x) - 1)).

    scale = 1.0507009873554805 and alpha = 1.6732632423543772 are the exact
    self-normalising constants (as in PyTorch); the seed rounded them to
    1.0507 and 1.67326.
    """
    _elu_into(x, out, _SELU_SCALE * _SELU_ALPHA, scale=_SELU_SCALE)


@_builtin(_ELEMENTWISE, formula="max(x, 0) + min(0, alpha * (exp(x / alpha) - 1))",
          check=_check_celu,
          compiled=lambda jit, dt, alpha: _elu_compiled(jit, dt, alpha, divisor=alpha))
def CELU(x, out, alpha=1.0):
    """Continuously differentiable ELU: CELU(x) = max(x, 0) + min(0, alpha * (exp(x / alpha) - 1)).

    alpha must be positive.
    """
    _elu_into(x, out, alpha, divisor=alpha)


def _x_sigmoid_into(x: np.ndarray, out: np.ndarray, beta: float) -> None:
    """out = x * sigmoid(beta*x) = x / (1 + exp(-beta*x)) for a power of two
    beta (so beta*x is exact); out may be x; scratch slot 0 (and bool 1).

    Where exp(-beta*x) may overflow the result is x*exp(beta*x), formed as
    (x*t)*t with t = exp(beta*x/2) so that no subnormal intermediate loses
    digits.
    """
    z = _scratch(x, 0)
    np.multiply(x, -beta, out=z)
    # -beta*x > limit, as a test on +-x (beta < 0 is rare: it negates a copy)
    tail = _tail_mask(x if beta > 0 else -x, -_exp_limit(x.dtype) / abs(beta))
    xt = x[tail] if tail is not None else None
    np.exp(z, out=z)
    z += 1.0
    np.divide(x, z, out=out)
    if xt is not None:
        out[tail] = _x_exp_tail(xt, beta)


def _swish_compiled(jit, dt: np.dtype, beta: float) -> tuple:
    if dt == _F64:
        return (jit.swish, beta)
    return (jit.silu_f32,) if beta == 1.0 else (jit.swish_f32, np.float32(beta))


def _swish_into(x: np.ndarray, out: np.ndarray, beta: float) -> None:
    """out = x * sigmoid(beta * x), accurate also when beta*x is not exact."""
    if beta == 0.0:
        np.multiply(x, 0.5, out=out)
        return
    if _is_pow2(beta):
        _x_sigmoid_into(x, out, beta)
        return
    if x.dtype != _F64:
        # the float64 product of two float32 values is exact
        x64 = x.astype(_F64)
        r = np.empty_like(x64)
        _swish_into(x64, r, float(x.dtype.type(beta)))
        np.copyto(out, r, casting="unsafe")
        return
    p = np.multiply(x, beta)
    # past this, beta*x saturates or the sigmoid of it is subnormal
    tail = _tail_mask(p, -_exp_limit(x.dtype))
    xt = x[tail] if tail is not None else None
    xc = np.clip(x, -1e290, 1e290)
    pc = np.multiply(xc, beta)
    delta = _two_prod_err(xc, pc, beta)
    s = np.empty_like(x)
    _sigmoid_into(p, s)
    # sigmoid(p + delta) = sigmoid(p) * (1 + (1 - sigmoid(p)) * delta)
    c = np.subtract(1.0, s)
    c *= delta
    c += 1.0
    s *= c
    np.multiply(x, s, out=out)
    if xt is not None:
        pt = p[tail]
        t = np.multiply(pt, 0.5)
        np.exp(t, out=t)
        r = np.clip(xt, -np.finfo(x.dtype).max, np.finfo(x.dtype).max)   # inf * 0 -> 0
        r *= t
        r *= t
        r *= 1.0 + delta[tail]
        out[tail] = r


@_builtin(_ELEMENTWISE, aliases=("swish",), formula="x * sigmoid(beta * x)",
          compiled=_swish_compiled)
def Swish(x, out, beta=1.0):
    """Swish: Swish(x) = x * sigmoid(beta * x).

    beta = 1 is SiLU.  When beta*x is not exact its rounding error is carried
    into the sigmoid, so the result stays accurate for large |beta*x|.
    """
    _swish_into(x, out, beta)


# --------------------------------------------------------------------------
# PyTorch activations the seed lacks
# --------------------------------------------------------------------------

# erfc(z) = exp(-z^2) * H(t) / (1 + 2 z), t = (z - 3)/(z + 3), for
# 0 <= z <= 27.95: a degree-22 fit of the exact function (weighted least
# squares on 66 Chebyshev nodes, mpmath at 50 digits); max relative error
# about 1 ulp in float64 Horner arithmetic.  All coefficients are below 1.3.
_ERFC_H = (1.2530080582697296, -0.1356211061245806, -0.0475622943534477,
           0.12964515870269466, -0.11927366341546376, 0.06830802734614276,
           -0.023770514915438384, 0.0025293917833684398, 0.001888690323113528,
           -0.000779831998417576, -0.00010515954714123878, 0.0001250979579209817,
           4.948313828525955e-06, -2.0096030049891268e-05, -7.278464122666823e-07,
           3.46281318200295e-06, 3.491227577170336e-07, -6.035657444881858e-07,
           -1.309222957935064e-07, 9.087981633960359e-08, 3.2596610052076445e-08,
           -8.211757530461563e-09, -4.073265208836539e-09)
_SQRT2 = 1.4142135623730951


def _split_into(a: np.ndarray, factor: float, *, hi: np.ndarray, lo: np.ndarray) -> None:
    """Veltkamp's split: ``hi`` = ``a`` rounded to the bits ``factor = 2**k + 1`` keeps, ``lo = a - hi`` exactly."""
    np.multiply(a, factor, out=lo)
    np.subtract(lo, a, out=hi)
    np.subtract(lo, hi, out=hi)
    np.subtract(a, hi, out=lo)


def _gelu_erf64_into(x: np.ndarray, out: np.ndarray) -> None:
    """x * Phi(x) for float64 x (out may be x); scratch slots 0-4.

    GELU(x) = max(x, 0) - |x| erfc(z)/2, z = |x|/sqrt(2), for both signs
    (no cancellation: erfc(z)/2 <= 1/2), with erfc(z) = exp(-x^2/2) H(t) /
    (1 + 2z) from the single polynomial ``_ERFC_H``.  The Gaussian's exponent
    -x^2/2 = wh + wl is carried exactly (wh = -s^2/2 with s = |x| rounded to
    26 bits, wl = -(|x| - s)(|x| + s)/2), renormalised to h + l with
    |l| <= ulp(h)/2, and exp(-x^2/2) = exp(h) (1 + l): in the left tail an
    error in the exponent would be amplified up to ~740x.  |x| is clamped to
    39.5, beyond which the erfc term underflows.
    """
    ac = _scratch(x, 0)
    np.clip(x, -39.5, 39.5, out=ac)
    np.abs(ac, out=ac)
    c = _scratch(x, 1)
    s = _scratch(x, 2)
    _split_into(ac, _VELTKAMP, hi=s, lo=c)  # s: |x| rounded to 26 bits
    wl = c
    t = _scratch(x, 3)
    np.add(ac, s, out=t)
    wl *= t
    wl *= -0.5
    s *= s
    s *= -0.5                            # wh, exact
    h = t
    np.add(s, wl, out=h)
    s -= h
    s += wl                              # l
    np.exp(h, out=h)
    s += 1.0                             # exp(-x^2/2) = h * s
    # t = (z - 3)/(z + 3) = (|x| - 3 sqrt2)/(|x| + 3 sqrt2)
    tt = c
    np.add(ac, 3.0 * _SQRT2, out=tt)
    q = _scratch(x, 4)
    np.subtract(ac, 3.0 * _SQRT2, out=q)
    np.divide(q, tt, out=tt)
    q = _horner_into(_ERFC_H, tt, q)
    np.multiply(ac, 2.0 * _SQRT2, out=tt)
    tt += 2.0
    q /= tt                              # erfc(z) exp(z^2) / 2
    q *= ac
    q *= s
    q *= h                               # |x| erfc(z)/2, may be subnormal
    _max0_into(x, tt)
    np.subtract(tt, q, out=out)


# float32 exact GELU: 0.5 * erfc(z) = exp(-z^2) * G(t) / (1 + 2 z) for
# 0 <= z <= 15/sqrt(2), t = (z - 2)/(z + 2), G a degree-9 least-squares fit
# (Chebyshev nodes, mpmath values) with max relative error 0.17 float32 eps.
_ERFC32_G = (0.638489194727853, -0.04638201036535771, -0.08301559817402554,
             0.0820280511225406, -0.027103070144740615, -0.004031933986429358,
             0.004317940016555887, 0.0006605527055880973, -0.0006161301298827297,
             -0.00020232309900121987)


def _gelu_erf32_into(x: np.ndarray, out: np.ndarray) -> None:
    """GELU for float32 computed in float32 (scratch slots 0-4, float64 0).

    GELU(x) = max(x, 0) - |x| * erfc(|x|/sqrt(2))/2 for both signs.  The
    Gaussian factor exp(-x^2/2) is evaluated in float64 from the exact
    exponent (an error there would be amplified by x^2/2 in the left tail).
    Beyond |x| = 15 the correction term is below float32's subnormals.
    """
    a = _scratch(x, 0)
    np.clip(x, -15.0, 15.0, out=a)
    np.abs(a, out=a)
    # -a^2/2 is exact in float64, and float64's exponential of it rounded
    # to float32 is as good as exact
    w64 = _scratch(x, 0, _F64)
    np.copyto(w64, a)
    w64 *= w64
    w64 *= -0.5
    np.exp(w64, out=w64)
    s = _scratch(x, 1)
    np.copyto(s, w64, casting="same_kind")   # exp(-x^2/2)
    # t = (z - 2)/(z + 2), z = a/sqrt(2)  ->  t = (a - 2 sqrt2)/(a + 2 sqrt2)
    t = _scratch(x, 3)
    np.add(a, 2.0 * _SQRT2, out=t)
    g = _scratch(x, 4)
    np.subtract(a, 2.0 * _SQRT2, out=g)
    np.divide(g, t, out=t)
    g = _horner_into(_ERFC32_G, t, g)
    lo = _scratch(x, 2)
    np.multiply(a, _SQRT2, out=lo)      # 1 + 2z
    lo += 1.0
    g /= lo
    g *= a
    g *= s                              # |x| * erfc(z)/2, may be subnormal
    _max0_into(x, t)
    np.subtract(t, g, out=out)


_GT_K = 1.5957691216057308        # 2*sqrt(2/pi)
_GT_A = 0.044715


def _split_const(v, bits: int) -> tuple[float, float]:
    """(v1, v2) for an exact Fraction v: v1 = v rounded to ``bits``
    significant bits, v2 = float(v - v1)."""
    from fractions import Fraction
    mant, ex = math.frexp(float(v))
    v1 = math.ldexp(round(mant * 2 ** bits), ex - bits)
    return v1, float(v - Fraction(v1))


def _gt64_consts():
    from fractions import Fraction
    import decimal
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        k = 2 * Fraction(decimal.Decimal("0.7978845608028653558798921198687637369517"))
    c = k * Fraction("0.044715")
    # negated: the kernel forms w = -2u directly
    return _split_const(-k, 36), _split_const(-c, 18)


# 2 sqrt(2/pi) and 0.044715 * 2 sqrt(2/pi), each as (head, tail)
(_GT64_K1, _GT64_K2), (_GT64_C1, _GT64_C2) = _gt64_consts()
_GRID7 = 1.5 * 2.0 ** 45          # (x + _GRID7) - _GRID7 rounds |x| < 2**44 to a multiple of 2**-7


def _gelu_tanh64_into(x: np.ndarray, out: np.ndarray) -> None:
    """x * sigmoid(2u) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3),
    for float64 x (scratch slots 0-5).

    The sigmoid magnifies an error of 2u by |2u| (up to ~745), so
    w = -2u = -(K x + C x^3) is carried as wh + wl to about 2**-60
    relative.  With x clamped to +-28 (where the result is x or 0),
    s = x rounded to a multiple of 2**-7 and d = x - s, |d| <= 2**-8:

    * s (K1 + C1 s^2), with K rounded to 36 bits and C to 18, is exact;
    * the rest, d (K + C (x^2 + x s + s^2)) + s (K2 + C2 s^2) with K2, C2 the
      constants' tails, is below 0.7 in magnitude, so its roundings are
      negligible.

    Then exp(w) = exp(wh) (1 + wl).  Where exp(w) could overflow (wh > 700,
    x < -20) the result is x exp(2u), formed as (x h) h with
    h = exp(-w/2) so that no digits are lost.
    """
    xc = _scratch(x, 0)
    np.clip(x, -28.0, 28.0, out=xc)
    s = _scratch(x, 1)
    np.add(xc, _GRID7, out=s)
    s -= _GRID7
    d = _scratch(x, 2)
    np.subtract(xc, s, out=d)
    s2 = _scratch(x, 3)
    np.multiply(s, s, out=s2)
    lo = _scratch(x, 4)
    np.add(xc, s, out=lo)
    lo *= xc
    lo += s2                             # x^2 + x s + s^2
    lo *= _GT64_C1 + _GT64_C2
    lo += _GT64_K1 + _GT64_K2
    lo *= d
    hi = d
    np.multiply(s2, _GT64_C2, out=hi)
    hi += _GT64_K2
    hi *= s
    lo += hi
    np.multiply(s2, _GT64_C1, out=hi)
    hi += _GT64_K1
    hi *= s                              # exact
    wh = s2
    np.add(hi, lo, out=wh)
    hi -= wh
    hi += lo                             # wl: w = wh + wl
    tail = None
    # fmax ignores NaN: a NaN elsewhere in the chunk must not hide the tail
    if np.fmax.reduce(wh, axis=None, initial=0.0) > 700.0:
        tail = np.greater(wh, 700.0, out=_scratch(x, 5, np.bool_))
        # xc: below -28 the result is -0 (x = -inf included)
        xt, ht, lt = xc[tail], wh[tail] * -0.5, hi[tail] * -0.5
    e = wh
    np.exp(wh, out=e)
    hi += 1.0
    e *= hi
    e += 1.0
    np.divide(x, e, out=out)
    if tail is not None:
        np.exp(ht, out=ht)
        lt += 1.0
        ht *= lt                         # h = exp(u)
        xt *= ht
        xt *= ht
        out[tail] = xt


def _gelu_tanh32_into(x: np.ndarray, out: np.ndarray) -> None:
    """x * sigmoid(2u) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3),
    for float32 x, evaluated in float64 (scratch float64 slots 0-1).

    The sigmoid magnifies an error of 2u by up to |2u| (~110 before the
    float32 result underflows); float64's few roundings in 2u stay far below
    float32's.  x^3 is finite in float64, and where exp(-2u) overflows the
    result is -0, as it is in float32 anyway; x is clamped at -28 only so
    that -inf gives -0 rather than -inf/inf.
    """
    a = _scratch(x, 0, _F64)
    np.copyto(a, x)
    np.maximum(a, -28.0, out=a)
    w = _scratch(x, 1, _F64)
    np.multiply(a, a, out=w)
    w *= -_GT_K * _GT_A
    w -= _GT_K
    w *= a                               # -2u
    np.exp(w, out=w)
    w += 1.0
    np.divide(a, w, out=a)
    np.copyto(out, a, casting="same_kind")


def _gelu_compiled(jit, dt: np.dtype, approximate: str) -> tuple:
    if approximate == "tanh":
        return (jit.gelu_tanh_f64 if dt == _F64 else jit.gelu_tanh_f32,)
    return (jit.gelu_erf_f64 if dt == _F64 else jit.gelu_erf_f32,)


@_builtin(_ELEMENTWISE, aliases=("gelu",),
          formula="x * Phi(x) = x/2 * (1 + erf(x / sqrt(2)))",
          check=_check_gelu, compiled=_gelu_compiled)
def GELU(x, out, approximate="none"):
    """Gaussian error linear unit: GELU(x) = x * Phi(x) = 0.5 * x * erfc(-x / sqrt(2)).

    ``approximate='tanh'``: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))),
    evaluated as x * sigmoid(2u) (the 1 + tanh form cancels for negative x).

    With numba installed (the ``fast`` extra) every form runs as one compiled
    loop from ``layers.compiled``, the same algorithm to the same accuracy
    (see ``compiled_kernels``); otherwise as the NumPy kernels below.

    The exact form needs erfc, which NumPy lacks; it is evaluated with a
    built-in approximation (``_ERFC_H`` in float64, ``_ERFC32_G`` for float32
    input, computed in float32) times the Gaussian with an exactly carried
    exponent, so the left tail stays accurate relative to the result down to
    underflow.  Measured against mpmath (40 digits) on dense samples over
    [-40, 12] plus the extremes (down to subnormals): max relative error
    3.1 eps for float64 (near x = -8e-8); float32 (against the float64
    result on 2.4 million points in [-16, 16]): 2.8 eps (near x = -2.7e-4);
    approximate='tanh': 0.5 eps (float32, computed in float64, see
    ``_gelu_tanh32_into``) and 2.9 eps (float64, near x = -21.1, see
    ``_gelu_tanh64_into``).
    """
    if approximate != "tanh" and x.dtype != _F64:
        _gelu_erf32_into(x, out)
        return
    if approximate == "tanh" and x.dtype != _F64:
        _gelu_tanh32_into(x, out)
        return
    if approximate == "tanh":
        _gelu_tanh64_into(x, out)
    else:
        _gelu_erf64_into(x, out)


@_builtin(_ELEMENTWISE, aliases=("silu", "swish1"), formula="x * sigmoid(x)",
          compiled=lambda jit, dt: _swish_compiled(jit, dt, 1.0))
def SiLU(x, out):
    """Sigmoid linear unit: SiLU(x) = x * sigmoid(x) (Swish with beta = 1)."""
    _swish_into(x, out, 1.0)


@_builtin(_ELEMENTWISE, aliases=("hardswish", "hard_silu"),
          formula="x * min(max(x + 3, 0), 6) / 6",
          compiled=lambda jit, dt: (jit.hard_swish, *(dt.type(v) for v in (3.0, 6.0, 0.0))), cheap=True)
def hard_swish(x, out):
    """Hard swish: hard_swish(x) = x * ReLU6(x + 3) / 6."""
    # dividing before multiplying keeps x * 1 exact (and finite) for x >= 3
    t = _scratch(x, 0)
    np.add(x, 3.0, out=t)
    np.clip(t, 0.0, 6.0, out=t)
    t /= 6.0
    np.multiply(x, t, out=out)


@_builtin(_ELEMENTWISE, formula="x if x > 0 else init * x",
          compiled=lambda jit, dt, init: (jit.leaky, dt.type(init)), cheap=True)
def PReLU(x, out, init=0.25):
    """Parametric ReLU with a fixed slope: PReLU(x) = x if x > 0 else init * x.

    The parameter is named after PyTorch's ``nn.PReLU(init=0.25)``; here the
    slope is not learned.
    """
    _leaky_into(x, out, init)


@_builtin(_ELEMENTWISE, formula="x if x > 0 else (lower + upper) / 2 * x",
          check=_check_rrelu,
          compiled=lambda jit, dt, lower, upper: (jit.leaky, dt.type((lower + upper) / 2.0)), cheap=True)
def RReLU(x, out, lower=0.125, upper=1.0 / 3.0):
    """Randomised leaky ReLU in evaluation mode: RReLU(x) = x if x > 0 else (lower + upper) / 2 * x.

    Training-mode sampling of the slope is not provided (forward passes only).
    """
    _leaky_into(x, out, (lower + upper) / 2.0)
