"""Time every activation against a naive NumPy formula and PyTorch CPU.

Usage: python benchmarks/bench_activations.py [--rows 200000] [--cols 100]
           [--repeat 5] [--markdown] [--only NAME ...] [--block]

Prints ns/element (median of the repeats) for the naive NumPy formula, for
layers.activations, and for torch.nn.functional under torch.inference_mode
(default threads), plus the ratio ours/torch.  The three candidates are timed
round-robin within each repeat so that background load affects them alike.

``--block`` times the in-network case instead: one (2048, cols) row block
(unless --rows is given), one thread on both sides, ours applied in place
(``act(y, out=y)``, as a layer does, after refreshing y; the refresh copy is
timed separately and subtracted), each sample averaging 20 calls.  torch and scipy (used only for
the naive exact GELU) are optional benchmark dependencies.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from layers import activations as _acts  # noqa: E402
from layers.activations import activation_names, get_act  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # benchmark still reports numpy columns
    torch = None
    F = None

try:
    from scipy.special import erf as _erf
except ImportError:
    _erf = None


def _sig(x):
    return 1 / (1 + np.exp(-x))


NAIVE = {
    "step": lambda x: (x > 0).astype(x.dtype),
    "identity": lambda x: x.copy(),
    "bent_identity": lambda x: (np.sqrt(x * x + 1) - 1) / 2 + x,
    "sigmoid": _sig,
    "log_sigmoid": lambda x: -np.logaddexp(0, -x),
    "tanh": np.tanh,
    "tanh_shrink": lambda x: x - np.tanh(x),
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "ReLU": lambda x: np.maximum(x, 0),
    "ReLU6": lambda x: np.clip(x, 0, 6),
    "softmax": lambda x: (lambda e: e / e.sum(axis=1, keepdims=True))(
        np.exp(x - x.max(axis=1, keepdims=True))),
    "softmin": lambda x: (lambda e: e / e.sum(axis=1, keepdims=True))(
        np.exp(x.min(axis=1, keepdims=True) - x)),
    "log_softmax": lambda x: (lambda d: d - np.log(np.exp(d).sum(axis=1, keepdims=True)))(
        x - x.max(axis=1, keepdims=True)),
    "softplus": lambda x: np.logaddexp(0, x),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "Mish": lambda x: x * np.tanh(np.logaddexp(0, x)),
    "tanhExp": lambda x: x * np.tanh(np.exp(x)),
    "hard_sigmoid": lambda x: np.clip(0.2 * x + 0.5, 0, 1),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0),
    "soft_shrink": lambda x: np.sign(x) * np.maximum(np.abs(x) - 0.5, 0),
    "threshold": lambda x: np.where(x > 0, x, 0),
    "leaky_ReLU": lambda x: np.where(x > 0, x, 0.01 * x),
    "ELU": lambda x: np.where(x > 0, x, np.exp(x) - 1),
    "SELU": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * (np.exp(x) - 1)),
    "CELU": lambda x: np.maximum(x, 0) + np.minimum(0, np.exp(x) - 1),
    "Swish": lambda x: x * _sig(x),
    "GELU": (lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2)))) if _erf else None,
    "GELU_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
    "SiLU": lambda x: x * _sig(x),
    "hard_swish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "PReLU": lambda x: np.where(x > 0, x, 0.25 * x),
    "RReLU": lambda x: np.where(x > 0, x, (1 / 8 + 1 / 3) / 2 * x),
}


def _torch_table():
    if torch is None:
        return {}
    w = {}

    def prelu(x):
        key = x.dtype
        if key not in w:
            w[key] = torch.tensor([0.25], dtype=x.dtype)
        return F.prelu(x, w[key])

    return {
        "step": lambda x: torch.heaviside(x, torch.zeros((), dtype=x.dtype)),
        "identity": lambda x: x.clone(),
        "bent_identity": lambda x: (torch.sqrt(x * x + 1) - 1) / 2 + x,
        "sigmoid": torch.sigmoid,
        "log_sigmoid": F.logsigmoid,
        "tanh": torch.tanh,
        "tanh_shrink": F.tanhshrink,
        "hard_tanh": F.hardtanh,
        "ReLU": F.relu,
        "ReLU6": F.relu6,
        "softmax": lambda x: F.softmax(x, dim=-1),
        "softmin": lambda x: F.softmin(x, dim=-1),
        "log_softmax": lambda x: F.log_softmax(x, dim=-1),
        "softplus": F.softplus,
        "softsign": F.softsign,
        "Mish": F.mish,
        "tanhExp": lambda x: x * torch.tanh(torch.exp(x)),
        "hard_sigmoid": lambda x: torch.clamp(0.2 * x + 0.5, 0, 1),
        "hard_shrink": F.hardshrink,
        "soft_shrink": F.softshrink,
        "threshold": lambda x: F.threshold(x, 0.0, 0.0),
        "leaky_ReLU": lambda x: F.leaky_relu(x, 0.01),
        "ELU": F.elu,
        "SELU": F.selu,
        "CELU": F.celu,
        "Swish": F.silu,
        "GELU": F.gelu,
        "GELU_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "SiLU": F.silu,
        "hard_swish": F.hardswish,
        "PReLU": prelu,
        "RReLU": lambda x: F.rrelu(x, training=False),
    }


def _time_interleaved(fns, arg, repeat):
    """Median seconds per call for each of ``fns``, timed round-robin.

    The candidates alternate within every repeat, so load from other processes
    on a shared machine affects all of them alike.  None entries give NaN.
    """
    live = [(i, f) for i, f in enumerate(fns) if f is not None]
    for _, f in live:
        f(arg)  # warm-up (allocator, thread pool)
    times: dict[int, list[float]] = {i: [] for i, _ in live}
    for _ in range(repeat):
        for i, f in live:
            t0 = time.perf_counter()
            f(arg)
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(times[i]) if i in times else float("nan")
            for i in range(len(fns))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=None,
                    help="rows of the input (default 200000, or 2048 with --block)")
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--block", action="store_true",
                    help="in-network style: one row block, single thread, in place")
    args = ap.parse_args(argv)
    if args.rows is None:
        args.rows = 2048 if args.block else 200000
    calls = 20 if args.block else 1
    if args.block:
        _acts.set_num_threads(1)
        if torch is not None:
            torch.set_num_threads(1)

    entries = []
    for name in activation_names():
        entries.append((name, name, {}))
        if name == "GELU":
            entries.append(("GELU_tanh", "GELU", {"approximate": "tanh"}))
    if args.only:
        entries = [e for e in entries if e[0] in args.only]

    ttab = _torch_table()
    rng = np.random.default_rng(0)
    base = rng.standard_normal((args.rows, args.cols)) * 3.0
    n = base.size
    rows = []
    for dtype in (np.float32, np.float64):
        x = base.astype(dtype)
        tx = torch.from_numpy(x) if torch is not None else None
        buf = np.empty_like(x)

        def refresh(a, buf=buf):
            for _ in range(calls):
                np.copyto(buf, a)

        for label, name, params in entries:
            act = get_act(name, **params)

            def ours(a, act=act, buf=buf):
                for _ in range(calls):
                    if args.block:
                        np.copyto(buf, a)
                        act(buf, out=buf)
                    else:
                        act(a)
            naive = NAIVE.get(label)
            tfn = ttab.get(label)

            def naive_fn(a, naive=naive):
                with np.errstate(all="ignore"):
                    for _ in range(calls):
                        naive(a)

            def torch_fn(a, tfn=tfn, tx=tx):
                with torch.inference_mode():
                    for _ in range(calls):
                        tfn(tx)

            t_naive, t_ours, t_torch, t_copy = (t / calls for t in _time_interleaved(
                [naive_fn if naive is not None else None, ours,
                 torch_fn if tfn is not None else None,
                 refresh if args.block else None], x, args.repeat))
            if args.block:
                t_ours -= t_copy
            rows.append((label, np.dtype(dtype).name, t_naive / n * 1e9, t_ours / n * 1e9,
                         t_torch / n * 1e9))
            r = rows[-1]
            print(f"{r[0]:>14} {r[1]:>8} naive {r[2]:8.3f}  ours {r[3]:8.3f}  "
                  f"torch {r[4]:8.3f}  ours/torch {r[3] / r[4]:6.2f}", flush=True)

    print()
    header = ("activation", "dtype", "numpy naive ns/el", "ours ns/el", "torch ns/el",
              "ours/torch")
    print(f"{header[0]:>14} {header[1]:>8} {header[2]:>18} {header[3]:>11} "
          f"{header[4]:>12} {header[5]:>11}")
    for r in rows:
        print(f"{r[0]:>14} {r[1]:>8} {r[2]:18.3f} {r[3]:11.3f} {r[4]:12.3f} {r[3] / r[4]:11.2f}")
    if args.markdown:
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + " --- |" * len(header))
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.3f} | "
                  f"{r[3] / r[4]:.2f} |")
    mode = "block, in place, 1 thread each" if args.block else "whole array"
    print(f"\n{mode}: shape ({args.rows}, {args.cols}), median of {args.repeat}, "
          f"numpy {np.__version__}, torch {torch.__version__ if torch else 'n/a'} "
          f"({torch.get_num_threads() if torch else 0} threads), cpu_count {os.cpu_count()}")
    native = sorted(f"{u}/{c}" for (u, c), v in _acts._NATIVE_SIMD.items() if v)
    print(f"native SIMD loops used: {', '.join(native) or 'none (composite fallbacks)'}")


if __name__ == "__main__":
    main()
