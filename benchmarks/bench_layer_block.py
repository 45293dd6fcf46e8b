"""Where a narrow layer's time goes: its bias and activation, and its matrix product.

Usage: python benchmarks/bench_layer_block.py [--cols 100] [--repeat 7] [--markdown]

1. Bias + activation on one (2048, cols) block in place, one thread, ns per element: the bias
   added first and the activation applied after (``np.add`` then ``act(y, out=y)``), the bias
   given to the activation (``act(y, out=y, bias=b)``, what a layer does), and PyTorch's
   ``add_`` then the in-place activation.  Each sample refreshes the block from a copy; the
   copy is timed alone and subtracted.
2. The product of an (8192, cols) batch with a (cols, cols) matrix, ns per row: the layers'
   way (fixed 2048-row blocks, one single-threaded BLAS call each, on the block thread pool),
   one NumPy call on BLAS's own threads, and PyTorch (``mm``, and ``addmm`` with the bias).

Medians of interleaved repeats (the product's after an untimed pause each, see
``common.SETTLE_S``).  PyTorch is optional (its columns are left out without it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.common import SETTLE_S, Table, interleaved, median  # noqa: E402
from layers.activations import get_act  # noqa: E402
from layers.blocks import block_rows, for_each_block  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

# activation name -> PyTorch's in-place equivalent (None: not compared)
TORCH_INPLACE = {
    "identity": lambda t: t,
    "ReLU": lambda t: t.relu_(),
    "hard_tanh": lambda t: t.clamp_(-1.0, 1.0),
    "leaky_ReLU": lambda t: torch.nn.functional.leaky_relu_(t, 0.01),
    "soft_shrink": lambda t: torch.nn.functional.softshrink(t, 0.5),
    "threshold": lambda t: torch.nn.functional.threshold_(t, 0.0, 0.0),
    "sigmoid": lambda t: t.sigmoid_(),
    "GELU": lambda t: torch.nn.functional.gelu(t),
    "ELU": lambda t: torch.nn.functional.elu_(t),
    "softmin": lambda t: torch.nn.functional.softmin(t, dim=-1),
    "log_sigmoid": lambda t: torch.nn.functional.logsigmoid(t),
}


def per_call(fn, calls: int):
    def run():
        for _ in range(calls):
            fn()
    return run


def bias_table(cols: int, repeats: int) -> Table:
    rows, calls = 2048, 20
    t = Table(f"Bias + activation on one ({rows}, {cols}) block, in place, 1 thread (ns/element)",
              ["activation", "dtype", "add, then act", "act(bias=b)", "torch add_, then act",
               "act(bias=b) / add then act", "act(bias=b) / torch"])
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads() if torch is not None else 0
    if torch is not None:
        torch.set_num_threads(1)
    for dtype in ("float32", "float64"):
        x = rng.standard_normal((rows, cols)).astype(dtype)
        b = rng.standard_normal(cols).astype(dtype)
        y = np.empty_like(x)
        for name in TORCH_INPLACE:
            act = get_act(name)
            cases = {
                "copy": per_call(lambda: np.copyto(y, x), calls),
                "separate": per_call(lambda: (np.copyto(y, x), np.add(y, b, out=y), act(y, out=y)), calls),
                "fused": per_call(lambda: (np.copyto(y, x), act(y, out=y, bias=b)), calls),
            }
            if torch is not None:
                ty, tx, tb, fn = torch.from_numpy(y), torch.from_numpy(x), torch.from_numpy(b), TORCH_INPLACE[name]

                def theirs():
                    with torch.inference_mode():
                        ty.copy_(tx)
                        fn(ty.add_(tb))
                cases["torch"] = per_call(theirs, calls)
            times = {k: median(v) / calls / x.size * 1e9 for k, v in interleaved(cases, repeats).items()}
            sep, fused = times["separate"] - times["copy"], times["fused"] - times["copy"]
            theirs_ns = times["torch"] - times["copy"] if "torch" in times else float("nan")
            t.add(name, dtype, sep, fused, theirs_ns, fused / sep, fused / theirs_ns)
    if torch is not None:
        torch.set_num_threads(threads)
    t.notes.append("each sample: 20 calls, each refreshing the block from a copy; the copy alone is "
                   "timed in the same rounds and subtracted from every column.")
    return t


def gemm_table(cols: int, repeats: int) -> Table:
    rows = 8192
    t = Table(f"Product of an ({rows}, {cols}) batch and a ({cols}, {cols}) matrix (ns/row)",
              ["dtype", f"layer blocks ({block_rows(cols)} rows)", "one NumPy call", "torch mm",
               "torch addmm", "blocks / one call", "blocks / torch mm"])
    rng = np.random.default_rng(1)
    for dtype in ("float32", "float64"):
        x = rng.standard_normal((rows, cols)).astype(dtype)
        w = rng.standard_normal((cols, cols)).astype(dtype)
        b = rng.standard_normal(cols).astype(dtype)
        u = np.empty((rows, cols), dtype)

        def blocks():
            for_each_block(rows, block_rows(cols), lambda s, e: np.matmul(x[s:e], w, out=u[s:e]))
        cases = {"blocks": blocks, "numpy": lambda: np.matmul(x, w, out=u)}
        if torch is not None:
            tx, tw, tb, tu = (torch.from_numpy(a) for a in (x, w, b, u))

            def mm():
                with torch.inference_mode():
                    torch.mm(tx, tw, out=tu)

            def addmm():
                with torch.inference_mode():
                    torch.addmm(tb, tx, tw, out=tu)
            cases.update(mm=mm, addmm=addmm)
        # paused before each sample: OpenBLAS's threads spin on after the threaded NumPy call
        calls = 20
        times = {k: median(v) / calls / rows * 1e9 for k, v in interleaved(
            {k: per_call(f, calls) for k, f in cases.items()}, repeats, settle=SETTLE_S).items()}
        nan = float("nan")
        t.add(dtype, times["blocks"], times["numpy"], times.get("mm", nan), times.get("addmm", nan),
              times["blocks"] / times["numpy"], times["blocks"] / times.get("mm", nan))
    t.notes.append("layer blocks: one single-threaded BLAS call per block on the layers' thread pool, "
                   "as LayerManager.forward runs them (results independent of the thread count); "
                   "the other columns use BLAS's or PyTorch's own threads.")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = ap.parse_args()
    start = time.perf_counter()
    for table in (bias_table(args.cols, args.repeat), gemm_table(args.cols, args.repeat)):
        print(table.markdown() if args.markdown else table.text(), end="\n\n", flush=True)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
