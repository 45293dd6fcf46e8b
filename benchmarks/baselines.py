"""Whole-process baselines for the suite: the same streaming job written directly in NumPy or
PyTorch, run as a child process exactly like ``python -m runner``.

    python benchmarks/baselines.py {numpy,numpy-seed,torch} --dims 784,1000,1000,1000,10
        --acts ReLU,ReLU,ReLU,identity --rows 16384 --batch-size 8192 --dtype float32

Each batch of standard-normal input rows is drawn as the runner's gaussian dataset draws it
(float64, then cast to the target dtype, so a float32 and a float64 run see the same values;
PyTorch draws in the target dtype), or read from ``--input`` (a .npy file in the target dtype,
as the runner's file dataset reads it), pushed through the
stack ``y = act(x @ w + b)`` and its output copied into a preallocated ``(rows, n_last)``
array (the runner writes its outputs to disk instead; that cost is tiny for 10 columns).
It prints ``loop X s``: the batch loop alone, timed as the runner times its own.
Only ReLU and identity are supported here: the wide MLP is all the suite needs them for.
"""

from __future__ import annotations

import argparse
import time


def file_batches(path, rows, batch_size):
    """(start, batch) of the first ``rows`` rows of the .npy file ``path``, each batch read into
    memory."""
    import numpy as np

    data = np.load(path, mmap_mode="r")
    for start in range(0, rows, batch_size):
        yield start, np.array(data[start:min(start + batch_size, rows)])


def drawn_batches(draw, rows, batch_size, features):
    """(start, batch) of ``rows`` rows, each batch ``draw((m, features))``."""
    for start in range(0, rows, batch_size):
        yield start, draw((min(batch_size, rows - start), features))


def timed_loop(batches, step) -> float:
    """Seconds to call ``step(start, batch)`` on every batch: the batch loop alone, reading
    included, as the runner's own timer counts it (after its imports and network build)."""
    t0 = time.perf_counter()
    for start, x in batches:
        step(start, x)
    return time.perf_counter() - t0


def numpy_job(dims, acts, rows, batch_size, dtype, seed_style, path=None) -> float:
    import numpy as np

    rng = np.random.default_rng(0)
    ws = [(0.05 * rng.standard_normal((a, b))).astype(dtype) for a, b in zip(dims, dims[1:])]
    bs = [(0.05 * rng.standard_normal(b)).astype(dtype) for b in dims[1:]]
    out = np.empty((rows, dims[-1]), dtype)
    bufs = [np.empty((batch_size, n), dtype) for n in dims[1:]]
    data = np.random.default_rng([0, 1])
    if path is None:
        batches = drawn_batches(lambda shape: data.standard_normal(shape).astype(dtype, copy=False),
                                rows, batch_size, dims[0])
    else:
        batches = file_batches(path, rows, batch_size)

    def step(start, h):
        m = len(h)
        for w, b, act, buf in zip(ws, bs, acts, bufs):
            if seed_style:  # the tutorial's one-liner: a new array per operation
                h = h @ w + b
                if act == "ReLU":
                    h = np.maximum(h, 0)
            else:  # in place, into one buffer per layer
                u = np.matmul(h, w, out=buf[:m])
                u += b
                if act == "ReLU":
                    np.maximum(u, 0, out=u)
                h = u
        out[start:start + m] = h

    return timed_loop(batches, step)


def torch_job(dims, acts, rows, batch_size, dtype, path=None) -> float:
    import torch

    tdtype = getattr(torch, dtype)
    mods = []
    for (a, b), act in zip(zip(dims, dims[1:]), acts):
        mods.append(torch.nn.Linear(a, b, dtype=tdtype))
        if act == "ReLU":
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods).eval()
    gen = torch.Generator().manual_seed(1)
    out = torch.empty((rows, dims[-1]), dtype=tdtype)
    if path is None:
        batches = drawn_batches(lambda shape: torch.randn(shape, generator=gen, dtype=tdtype),
                                rows, batch_size, dims[0])
    else:
        batches = ((start, torch.from_numpy(b)) for start, b in file_batches(path, rows, batch_size))

    def step(start, x):
        out[start:start + len(x)] = model(x)

    with torch.inference_mode():
        return timed_loop(batches, step)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("impl", choices=("numpy", "numpy-seed", "torch"))
    ap.add_argument("--dims", required=True)
    ap.add_argument("--acts", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=8192)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--input", help="read the rows from this .npy file (in --dtype) instead of drawing them")
    args = ap.parse_args(argv)
    dims = [int(d) for d in args.dims.split(",")]
    acts = args.acts.split(",")
    if len(acts) != len(dims) - 1 or set(acts) - {"ReLU", "identity"}:
        ap.error("--acts: one of ReLU/identity per layer")
    if args.impl == "torch":
        loop = torch_job(dims, acts, args.rows, args.batch_size, args.dtype, args.input)
    else:
        loop = numpy_job(dims, acts, args.rows, args.batch_size, args.dtype, args.impl == "numpy-seed", args.input)
    print(f"loop {loop:.6f} s")


if __name__ == "__main__":
    main()
