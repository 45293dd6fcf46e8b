"""The benchmark suite of the runner: one command, ratios measured side by side in one run.

Usage:
    python benchmarks/run.py [--quick] [--only SECTION ...] [--markdown FILE] [--repeats N]

Sections (``--only`` takes these names):
    wide     784→1000→1000→1000→10 MLP (ReLU, identity output) on 8192 rows, float32/float64:
             GFLOP/s of LayerManager.forward, raw NumPy loops, the layer GEMMs alone, one 2048³
             GEMM (the BLAS bound) and PyTorch; then whole processes (`python -m runner`, a NumPy
             script, a PyTorch script, all reading one .npy file) timed at R and 2R rows,
             compared on the marginal time.
    narrow   5 layers × 100 units on 300k rows for every activation vs PyTorch's equivalent.
    stream   rows/s and peak RSS of `python -m runner dataset=file` for 1e5, 1e6, 1e7 rows × 100
             float32 (.npy in a temp dir), and a batch_size sweep.
    startup  wall time of the default run vs a minimal @hydra.main app; -X importtime; the figure.
    stats    per-row cost with stats.enabled=true vs false (narrow stack, float32/float64).
    sweep    per-job overhead of a 100-job multirun vs a minimal Hydra app's; an 8-point
             compute-bound sweep with the basic launcher vs joblib (n_jobs=2).

Every comparison is interleaved (A, B, C, A, B, C, ...) and reported as medians; a target that is
the ratio of two programs takes the median of each round's ratio. PyTorch is
optional: without it the PyTorch columns read n/a. Timings go to stdout as each section ends;
``--markdown FILE`` writes them, with the machine description, as Markdown.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (REPO, SETTLE_S, ChildFailed, Table, check, interleaved,  # noqa: E402
                    machine_info, median, run_child, torch_available)
from layers import LayerManager  # noqa: E402
from layers.activations import activation_names  # noqa: E402
from layers.base import MiddleLayer, OutputLayer  # noqa: E402

PY = sys.executable
SECTIONS = ("wide", "narrow", "stream", "startup", "stats", "sweep")

WIDE_DIMS = [784, 1000, 1000, 1000, 10]
WIDE_ACTS = ["ReLU", "ReLU", "ReLU", "identity"]
NARROW_DIMS = [100] * 6
STATS_ACTS = ["ReLU", "tanh", "ReLU", "sigmoid", "softmax"]
DEFAULT_DIMS = [100, 100, 100, 10]          # conf/network/mlp.yaml
DEFAULT_ACTS = ["ReLU", "sigmoid", "softmax"]
MINIMAL_APP = ("import hydra\nfrom omegaconf import DictConfig\n\n\n"
               "@hydra.main(version_base=None, config_path=None, config_name=None)\n"
               "def main(cfg: DictConfig) -> None:\n    print('ok')\n\n\n"
               "if __name__ == '__main__':\n    main()\n")


def flops_per_row(dims: list[int]) -> int:
    return 2 * sum(a * b for a, b in zip(dims, dims[1:]))


def build_stack(dims, acts, dtype, act_dics=None) -> LayerManager:
    rng = np.random.default_rng([0, 0])
    layers = []
    for i, (a, b, act) in enumerate(zip(dims, dims[1:], acts)):
        cls = OutputLayer if i == len(acts) - 1 else MiddleLayer
        layers.append(cls(prev=a, n=b, act=act, act_dic=(act_dics or {}).get(i), rng=rng,
                          dtype=dtype, name=f"l{i}"))
    return LayerManager(layers)


def paired(of: dict[str, list[float]], name: str, other: str) -> float:
    """The median over rounds of ``name``'s value over ``other``'s (nan when ``other`` is absent)."""
    if other not in of:
        return float("nan")
    return median([a / b for a, b in zip(of[name], of[other])])


def yaml_network(dims, acts) -> str:
    lines = ["layers:"]
    for i, (a, b, act) in enumerate(zip(dims, dims[1:], acts)):
        prev = f"prev: {a}, " if i == 0 else ""
        lines.append(f"  - {{name: l{i}, {prev}n: {b}, act: {act}}}")
    return "\n".join(lines) + "\n"


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.tmp = Path(tempfile.mkdtemp(prefix="fwdrunner-bench-", dir=args.tmpdir))
        self.conf = self.tmp / "conf"
        (self.conf / "network").mkdir(parents=True)
        for name, dims, acts in (("bench_wide", WIDE_DIMS, WIDE_ACTS),
                                 ("bench_narrow", NARROW_DIMS, STATS_ACTS)):
            (self.conf / "network" / f"{name}.yaml").write_text(yaml_network(dims, acts))
        self._runs = 0
        self.tables: list[Table] = []
        self.targets: list[tuple[str, str, str, Any]] = []   # (what, measured, target, met)
        self.failures: list[str] = []
        self.torch_version = torch_available()
        self._torch = None

    # -- helpers ---------------------------------------------------------------------------

    def repeats(self, full: int, quick: int) -> int:
        if self.args.repeats:
            return self.args.repeats
        return quick if self.quick else full

    def torch(self):
        if self._torch is None and self.torch_version:
            import torch  # optional benchmark dependency, imported only here

            self._torch = torch
        return self._torch

    def run_dir(self) -> str:
        self._runs += 1
        return str(self.tmp / "runs" / f"r{self._runs:04d}")

    def runner_argv(self, *overrides: str, config_dir: bool = True) -> list[str]:
        argv = [PY, "-m", "runner"]
        if config_dir:
            argv += ["--config-dir", str(self.conf)]
        return argv + list(overrides) + [f"hydra.run.dir={self.run_dir()}"]

    def run_runner(self, *overrides: str, what: str = "python -m runner", **kw):
        return self.run_argv(self.runner_argv(*overrides, **kw), what + " " + " ".join(overrides))

    @staticmethod
    def run_argv(argv: list[str], what: str):
        """Runs ``argv`` as a child process (a failure fails the suite) and removes the run
        directory it ends with (``hydra.run.dir=...``), if it names one."""
        res = check(run_child(argv, cwd=REPO), what)
        if argv[-1].startswith("hydra.run.dir="):
            shutil.rmtree(argv[-1].split("=", 1)[1], ignore_errors=True)
        return res

    def emit(self, table: Table) -> None:
        self.tables.append(table)
        print("\n" + table.text() + "\n", flush=True)

    def target(self, what: str, measured: str, target: str, met: Any) -> None:
        self.targets.append((what, measured, target, met))

    # -- 1. wide MLP ----------------------------------------------------------------------

    def section_wide(self) -> None:
        rows = 8192
        fpr = flops_per_row(WIDE_DIMS)
        torch = self.torch()
        reps = self.repeats(5, 2)
        t = Table("1a. Wide MLP 784→1000→1000→1000→10 in process, 8192 rows (GFLOP/s, median)",
                  ["case", "float32", "float64", "f32 / GEMM bound", "f64 / GEMM bound",
                   "f32 / torch", "f64 / torch"])
        t.notes.append(f"{fpr / 1e6:.3f} MFLOP per row (2·Σ prev·n); hidden ReLU, output identity "
                       f"(no softmax), so every case computes the same thing as the nn.Linear stack.")
        t.notes.append(f"{reps} interleaved rounds after a warm-up (every other round in reverse order), "
                       f"each call after an untimed {SETTLE_S} s pause (BLAS and OpenMP threads spin on "
                       "after a threaded call); GEMM bound = one 2048³ np.matmul. GFLOP/s are medians; a "
                       "ratio is the median of the rounds' ratios.")
        results: dict[str, dict[str, float]] = {}
        # per dtype and case: GFLOP/s of each round, for the rounds' ratios
        rounds: dict[str, dict[str, list[float]]] = {}
        for dtype in ("float32", "float64"):
            net = build_stack(WIDE_DIMS, WIDE_ACTS, dtype)
            x = np.random.default_rng([0, 1]).standard_normal((rows, WIDE_DIMS[0])).astype(dtype)
            ws = [layer.w for layer in net]
            bs = [layer.b for layer in net]
            bufs = [np.empty((rows, n), dtype) for n in WIDE_DIMS[1:]]
            a = np.random.default_rng(2).standard_normal((2048, 2048)).astype(dtype)
            c = np.empty_like(a)

            def gemm():
                np.matmul(a, a, out=c)

            def gemms_only():
                h = x
                for w, buf in zip(ws, bufs):
                    h = np.matmul(h, w, out=buf)

            def numpy_inplace():
                h = x
                for i, (w, b, buf) in enumerate(zip(ws, bs, bufs)):
                    u = np.matmul(h, w, out=buf)
                    u += b
                    if i < len(ws) - 1:
                        np.maximum(u, 0, out=u)
                    h = u

            def numpy_seed():
                h = x
                for w, b in zip(ws[:-1], bs[:-1]):
                    h = np.maximum(h @ w + b, 0)
                return h @ ws[-1] + bs[-1]

            cases: dict[str, Callable[[], Any]] = {
                "GEMM 2048³ (BLAS bound)": gemm,
                "layer GEMMs alone (x @ w, same shapes)": gemms_only,
                "runner LayerManager.forward": lambda: net.forward(x),
                "NumPy in-place loop (matmul out=, +=, maximum out=)": numpy_inplace,
                "NumPy seed-style loop (h = np.maximum(h @ w + b, 0))": numpy_seed,
            }
            if torch is not None:
                model = self.torch_model(WIDE_DIMS, ["ReLU", "ReLU", "ReLU", None], dtype, net)
                tx = torch.from_numpy(x)

                def torch_fwd():
                    with torch.inference_mode():
                        model(tx)

                cases["PyTorch nn.Linear+ReLU stack (inference_mode)"] = torch_fwd
            flops = {name: fpr * rows for name in cases}
            flops["GEMM 2048³ (BLAS bound)"] = 2 * 2048 ** 3
            times = interleaved(cases, reps, settle=SETTLE_S, alternate=True)
            rounds[dtype] = {name: [flops[name] / s / 1e9 for s in times[name]] for name in cases}
            for name in cases:
                results.setdefault(name, {})[dtype] = median(rounds[dtype][name])
            # Input generation as the runner's gaussian dataset does it (float64, then cast)
            # against drawing the target dtype directly.
            gen = np.random.default_rng(0)
            feats = WIDE_DIMS[0]
            tg = interleaved({
                "f64+cast": lambda: gen.standard_normal((rows, feats)).astype(dtype, copy=False),
                "direct": lambda: gen.standard_normal((rows, feats), dtype=dtype),
            }, reps)
            results.setdefault("_gen", {})[dtype] = (median(tg["f64+cast"]), median(tg["direct"]))
        bound_name = "GEMM 2048³ (BLAS bound)"
        torch_name = "PyTorch nn.Linear+ReLU stack (inference_mode)"

        for name, r in results.items():
            if name.startswith("_"):
                continue
            t.add(name, r["float32"], r["float64"], paired(rounds["float32"], name, bound_name),
                  paired(rounds["float64"], name, bound_name), paired(rounds["float32"], name, torch_name),
                  paired(rounds["float64"], name, torch_name))
        g = results["_gen"]
        t.notes.append("input of 8192×784 rows: gaussian dataset style (float64 draw, then cast) "
                       f"{g['float32'][0] * 1e3:.1f} ms vs direct float32 draw {g['float32'][1] * 1e3:.1f} ms; "
                       f"float64 {g['float64'][0] * 1e3:.1f} ms (per 8192 rows; the wide forward takes "
                       f"{fpr * rows / results['runner LayerManager.forward']['float32'] / 1e9 * 1e3:.0f} ms f32).")
        self.emit(t)
        for dtype in ("float32", "float64"):
            r = paired(rounds[dtype], "runner LayerManager.forward", bound_name)
            self.target(f"wide {dtype}: LayerManager.forward / GEMM bound", f"{r:.2f}×", "≥ 0.9×", r >= 0.9)
        self.section_wide_processes(fpr)

    def torch_model(self, dims, acts, dtype, net, act_modules=None):
        """nn.Sequential of nn.Linear (+ activation) with the runner stack's weights."""
        torch = self.torch()
        tdtype = getattr(torch, dtype)
        mods = []
        for i, (layer, act) in enumerate(zip(net, acts or [None] * len(net))):
            lin = torch.nn.Linear(layer.prev, layer.n, dtype=tdtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.w.T)))
                lin.bias.copy_(torch.from_numpy(layer.b))
            mods.append(lin)
            if act_modules is not None:
                mods.append(act_modules(i).to(tdtype))
            elif act == "ReLU":
                mods.append(torch.nn.ReLU())
        return torch.nn.Sequential(*mods).eval()

    def section_wide_processes(self, fpr: int) -> None:
        # R and 2R are 4 and 8 batches of 8192 rows. A process's fixed cost moves by a few tenths
        # of a second from run to run (PyTorch's import alone takes 1.3-2.7 s here), which is a
        # fifth of the 1.5-3 s that R more rows cost. So each round runs every program at R and
        # 2R back to back and takes its own marginal, and a ratio is the median of the rounds'.
        R = 16384 if self.quick else 32768
        reps = self.repeats(7, 2)
        dims = ",".join(map(str, WIDE_DIMS))
        acts = ",".join(WIDE_ACTS)
        t = Table(f"1b. Wide MLP, whole processes: marginal cost between {R} and {2 * R} rows",
                  ["program", "dtype", f"wall {R} rows s", f"wall {2 * R} rows s", "µs/row (marginal)",
                   "GFLOP/s (marginal)", "vs NumPy script", "vs PyTorch script",
                   "µs/row (loop timers, marginal)", "loop vs NumPy", "loop vs PyTorch"])
        t.notes.append("CLI: `python -m runner --config-dir <tmp> network=bench_wide dataset=file "
                       "dataset.path=<R or 2R rows>.npy dtype=... batch_size=8192 stats.enabled=false "
                       "stats.plot=false`; the .npy files hold standard-normal rows in the run's dtype, and "
                       "all three programs read the same ones, so the rows compare the forward pass and its "
                       "I/O, not three ways of drawing random numbers. The gaussian-dataset row draws its "
                       "input instead (float64, then cast: the same values in both dtypes); PyTorch's "
                       "torch.randn in float32 draws several times faster.")
        t.notes.append("NumPy / PyTorch scripts: benchmarks/baselines.py --input. "
                       f"{reps} rounds; each runs every program at R and then 2R rows (every other round "
                       "in reverse order) and takes its marginal (wall at 2R − wall at R) / R, so start-up "
                       "and import costs cancel. µs/row: median of the rounds' marginals; 'vs': median of "
                       "the rounds' ratios. 'loop timers': the same marginal of the batch loop as each "
                       "program times it (runner: its `done: ... in X s` line; the scripts: after their "
                       "imports and model build), which leaves out the start-up's noise.")
        script = str(Path(__file__).parent / "baselines.py")
        numpy_name, torch_name = "NumPy script (in-place loop)", "PyTorch script"
        for dtype in ("float32", "float64"):
            files = {n: self.npy_file(n, WIDE_DIMS[0], dtype, "wide") for n in (R, 2 * R)}
            progs: dict[str, Callable[[int], list[str]]] = {
                "python -m runner": lambda n, d=dtype: self.runner_argv(
                    "network=bench_wide", "dataset=file", f"dataset.path={files[n]}", f"dtype={d}",
                    "batch_size=8192", "stats.enabled=false", "stats.plot=false"),
                numpy_name: lambda n, d=dtype: [
                    PY, script, "numpy", "--dims", dims, "--acts", acts, "--rows", str(n), "--dtype", d,
                    "--input", str(files[n])],
            }
            if self.torch_version:
                progs[torch_name] = lambda n, d=dtype: [
                    PY, script, "torch", "--dims", dims, "--acts", acts, "--rows", str(n), "--dtype", d,
                    "--input", str(files[n])]
            progs["python -m runner, gaussian dataset"] = lambda n, d=dtype: self.runner_argv(
                "network=bench_wide", f"dataset.rows={n}", f"dtype={d}", "batch_size=8192",
                "stats.enabled=false", "stats.plot=false")
            walls, marginal, loop = self.marginals(progs, R, reps, dtype)
            for p in files.values():  # up to 0.6 GB; the streaming section needs the disk
                p.unlink(missing_ok=True)
            for name in progs:
                pr = median(marginal[name])
                t.add(name, dtype, median(walls[(name, R)]), median(walls[(name, 2 * R)]), pr * 1e6,
                      fpr / pr / 1e9, paired(marginal, name, numpy_name), paired(marginal, name, torch_name),
                      median(loop[name]) * 1e6, paired(loop, name, numpy_name), paired(loop, name, torch_name))
            for other, name, bound in ((numpy_name, "raw NumPy loop", 1.1), (torch_name, "PyTorch", 1.0)):
                if other in progs:
                    r = paired(marginal, "python -m runner", other)
                    lr = paired(loop, "python -m runner", other)
                    self.target(f"wide {dtype}: CLI per-row / {name}", f"{r:.2f}× (loop timers {lr:.2f}×)",
                                f"≤ {bound}×", r <= bound)
        self.emit(t)

    def marginals(self, progs: dict[str, Callable[[int], list[str]]], R: int, reps: int, what: str):
        """Runs every program at R and then 2R rows in each of ``reps`` rounds (every other round
        in reverse order). Returns the walls by (program, rows), and by program each round's
        marginal seconds per row, of the wall and of the program's own loop timer."""
        walls: dict[tuple[str, int], list[float]] = {}
        marginal: dict[str, list[float]] = {name: [] for name in progs}
        loop: dict[str, list[float]] = {name: [] for name in progs}
        for r in range(reps):
            order = list(progs.items())
            for name, argv_of in (order[::-1] if r % 2 else order):
                wall, timer = {}, {}
                for n in (R, 2 * R):
                    res = self.run_argv(argv_of(n), f"{name} {what} rows={n}")
                    walls.setdefault((name, n), []).append(res.wall)
                    wall[n], timer[n] = res.wall, self.loop_time(res.stdout)
                marginal[name].append((wall[2 * R] - wall[R]) / R)
                loop[name].append((timer[2 * R] - timer[R]) / R)
        return walls, marginal, loop

    # -- 2. narrow deep stack, every activation --------------------------------------------

    def torch_activations(self) -> dict[str, tuple[dict, Callable[[], Any]]]:
        """runner activation label -> (runner act_dic, factory of the equivalent torch module)."""
        nn = self.torch().nn
        table: dict[str, tuple[str, dict, Callable[[], Any]]] = {
            "identity": ("identity", {}, nn.Identity),
            "sigmoid": ("sigmoid", {}, nn.Sigmoid),
            "log_sigmoid": ("log_sigmoid", {}, nn.LogSigmoid),
            "tanh": ("tanh", {}, nn.Tanh),
            "tanh_shrink": ("tanh_shrink", {}, nn.Tanhshrink),
            "hard_tanh": ("hard_tanh", {}, nn.Hardtanh),
            "ReLU": ("ReLU", {}, nn.ReLU),
            "ReLU6": ("ReLU6", {}, nn.ReLU6),
            "softmax": ("softmax", {}, lambda: nn.Softmax(dim=-1)),
            "softmin": ("softmin", {}, lambda: nn.Softmin(dim=-1)),
            "log_softmax": ("log_softmax", {}, lambda: nn.LogSoftmax(dim=-1)),
            "softplus": ("softplus", {}, nn.Softplus),
            "softsign": ("softsign", {}, nn.Softsign),
            "Mish": ("Mish", {}, nn.Mish),
            "hard_sigmoid": ("hard_sigmoid", {"slope": 1 / 6, "offset": 0.5}, nn.Hardsigmoid),
            "hard_shrink": ("hard_shrink", {"lambda_": 0.5}, lambda: nn.Hardshrink(0.5)),
            "soft_shrink": ("soft_shrink", {"lambda_": 0.5}, lambda: nn.Softshrink(0.5)),
            "threshold": ("threshold", {"threshold": 0.0, "value": 0.0}, lambda: nn.Threshold(0.0, 0.0)),
            "leaky_ReLU": ("leaky_ReLU", {"alpha": 0.01}, lambda: nn.LeakyReLU(0.01)),
            "ELU": ("ELU", {"alpha": 1.0}, nn.ELU),
            "SELU": ("SELU", {}, nn.SELU),
            "CELU": ("CELU", {"alpha": 1.0}, nn.CELU),
            "Swish": ("Swish", {"beta": 1.0}, nn.SiLU),
            "GELU": ("GELU", {}, nn.GELU),
            "GELU_tanh": ("GELU", {"approximate": "tanh"}, lambda: nn.GELU(approximate="tanh")),
            "SiLU": ("SiLU", {}, nn.SiLU),
            "hard_swish": ("hard_swish", {}, nn.Hardswish),
            "PReLU": ("PReLU", {"init": 0.25}, lambda: nn.PReLU(1, init=0.25)),
            "RReLU": ("RReLU", {"lower": 0.125, "upper": 1 / 3}, lambda: nn.RReLU(0.125, 1 / 3)),
        }
        return table  # type: ignore[return-value]

    def section_pool(self) -> None:
        """Does the activations' thread pool engage, and does it pay, for the runner's shapes?"""
        import layers.activations as acts_mod

        reps = self.repeats(15, 7)
        limit = getattr(acts_mod, "_PARALLEL_MIN", None)
        t = Table("2a. Activation thread pool: LayerManager.forward on 8192 rows, pool on vs off (ms, median)",
                  ["network", "dtype", "elements per hidden layer", "pool engages", "pool on ms",
                   "pool off ms", "on/off"])
        t.notes.append(f"pool off = layers.activations.set_num_threads(1); threshold _PARALLEL_MIN = {limit} "
                       f"elements; {reps} interleaved repeats.")
        nets = [("default mlp 100→100→100→10", DEFAULT_DIMS, DEFAULT_ACTS),
                ("narrow 100×5 (ReLU, tanh, ReLU, sigmoid, softmax)", NARROW_DIMS, STATS_ACTS),
                ("wide 784→1000×3→10", WIDE_DIMS, WIDE_ACTS)]
        threads = acts_mod.get_num_threads()
        for label, dims, acts in nets:
            for dtype in ("float32", "float64"):
                net = build_stack(dims, acts, dtype)
                x = np.random.default_rng([0, 1]).standard_normal((8192, dims[0])).astype(dtype)

                def off():
                    acts_mod.set_num_threads(1)
                    try:
                        net.forward(x)
                    finally:
                        acts_mod.set_num_threads(threads)

                r = interleaved({"on": lambda: net.forward(x), "off": off},
                                max(3, reps // 5) if dims is WIDE_DIMS else reps)
                el = 8192 * dims[1]
                t.add(label, dtype, el, bool(limit is not None and el >= limit and threads > 1),
                      median(r["on"]) * 1e3, median(r["off"]) * 1e3, median(r["on"]) / median(r["off"]))
        self.emit(t)

    def section_narrow(self) -> None:
        self.section_pool()
        torch = self.torch()
        names = activation_names()
        rows = int(self.args.narrow_rows or (100_000 if self.quick else 300_000))
        dtypes = ("float32",) if self.quick else ("float32", "float64")
        # Seven rounds, each timing both sides back to back; a case's ratio is the median of its
        # rounds' ratios, so drift over the minutes of the section cancels within a round. With
        # medians of each side taken apart, one kernel (leaky_ReLU, PReLU and RReLU share it)
        # read 0.75-1.14x within a single run.
        reps = self.repeats(7, 2)
        batch = 8192
        t = Table(f"2. Narrow deep stack 100→100×5, {rows:,} rows in batches of {batch}: runner vs PyTorch",
                  ["activation", "runner act_dic", "torch module"]
                  + [f"{d} runner ns/row" for d in dtypes] + [f"{d} torch ns/row" for d in dtypes]
                  + [f"{d} runner/torch" for d in dtypes])
        t.notes.append("all 5 layers use the activation; in process, LayerManager.forward vs "
                       "nn.Sequential(nn.Linear, act)×5 under torch.inference_mode with the same weights; "
                       f"{reps} rounds, each timing both back to back (every other round in reverse "
                       f"order), each call after an untimed {SETTLE_S} s pause; ns/row are medians of "
                       "each side, runner/torch is the median of the rounds' ratios.")
        if torch is None:
            t.notes.append("PyTorch is not installed: section skipped.")
            self.emit(t)
            return
        table = self.torch_activations()
        entries = []
        for name in names:
            for label in ((name, "GELU_tanh") if name == "GELU" else (name,)):
                entries.append(label)
        skipped = [e for e in entries if e not in table]
        entries = [e for e in entries if e in table]
        quick_set = ["ReLU", "sigmoid", "tanh", "softmax", "GELU", "hard_sigmoid"]
        if self.args.activations:
            entries = [e for e in entries if e in self.args.activations]
        elif self.quick:
            entries = [e for e in entries if e in quick_set]
        if skipped:
            t.notes.append(f"no PyTorch equivalent, not compared: {', '.join(skipped)}.")
        data = {d: np.random.default_rng([0, 1]).standard_normal((rows, 100)).astype(d) for d in dtypes}
        ratios = []
        for label in entries:
            act, act_dic, factory = table[label]
            res: dict[str, tuple[float, float, float]] = {}
            for dtype in dtypes:
                x = data[dtype]
                net = build_stack(NARROW_DIMS, [act] * 5, dtype, {i: act_dic for i in range(5)})
                model = self.torch_model(NARROW_DIMS, None, dtype, net, act_modules=lambda i: factory())
                tx = torch.from_numpy(x)

                def ours():
                    for s in range(0, rows, batch):
                        net.forward(x[s:s + batch])

                def theirs():
                    with torch.inference_mode():
                        for s in range(0, rows, batch):
                            model(tx[s:s + batch])

                net.forward(x[:batch])  # warm-up: buffers, thread pools
                with torch.inference_mode():
                    model(tx[:batch])
                times = interleaved({"runner": ours, "torch": theirs}, reps, warmup=0, settle=SETTLE_S,
                                    alternate=True)
                ratio = paired(times, "runner", "torch")
                res[dtype] = (median(times["runner"]) / rows * 1e9, median(times["torch"]) / rows * 1e9, ratio)
                ratios.append((label, dtype, ratio))
            dic = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in act_dic.items())
            t.add(label, dic or "-", type(factory()).__name__,
                  *[res[d][0] for d in dtypes], *[res[d][1] for d in dtypes],
                  *[res[d][2] for d in dtypes])
            print(f"  narrow {label}: " + ", ".join(f"{d} {res[d][2]:.2f}×" for d in dtypes), flush=True)
        if ratios:
            rs = [r for _, _, r in ratios]
            worst = max(ratios, key=lambda r: r[2])
            t.notes.append(f"runner/torch over {len(rs)} cases: median {median(rs):.2f}×, "
                           f"best {min(rs):.2f}×, worst {worst[2]:.2f}× ({worst[0]} {worst[1]}); "
                           f"{sum(r <= 1.0 for r in rs)} of {len(rs)} at or below 1.0×.")
            self.target("narrow stack: runner/torch per row, median over activations",
                        f"{median(rs):.2f}× (worst {worst[2]:.2f}× {worst[0]} {worst[1]})", "≤ 1.0×",
                        median(rs) <= 1.0)
        self.emit(t)

    # -- 3. streaming ------------------------------------------------------------------------

    def npy_file(self, rows: int, cols: int, dtype: str, name: str) -> Path:
        path = self.tmp / "data" / f"{name}_{rows}x{cols}_{dtype}.npy"
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([0, 2])
        chunk = 250_000
        with open(path, "wb") as f:
            np.lib.format.write_array_header_2_0(
                f, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (rows, cols)})
            for s in range(0, rows, chunk):
                f.write(rng.standard_normal((min(chunk, rows - s), cols), dtype=dtype).tobytes())
        return path

    @staticmethod
    def loop_time(stdout: str) -> float:
        """The batch loop's time as the program prints it (the runner's "done: ... in X s")."""
        m = re.search(r"(?:done: .* in|^loop) ([0-9.]+) s", stdout, re.M)
        return float(m.group(1)) if m else float("nan")

    def section_stream(self) -> None:
        sizes = [100_000, 1_000_000] if self.quick else [100_000, 1_000_000, 10_000_000]
        cols = 100
        need = sum(sizes) * cols * 4 + sizes[-1] * 10 * 4 + (2 << 30)
        free = shutil.disk_usage(self.tmp).free
        t = Table("3a. Streaming a float32 .npy file through the default network (100→100→100→10)",
                  ["rows", "file GB", "wall s (median)", "runner loop s", "loop rows/s",
                   "marginal wall s per 1e6 rows", "peak RSS MiB"])
        t.notes.append("`python -m runner dataset=file dataset.path=<tmp>.npy dtype=float32 stats.plot=false "
                       "kernels=numpy` (default mlp network, stats on; NumPy kernels at every size, so the "
                       "rows compare like for like: numba alone adds about 130 MB of RSS); the file was just written, so it is read from the "
                       "page cache; 'runner loop' is the time the runner prints for its batch loop; the "
                       "wall time also holds start-up and the sha256 of the input file.")
        if free < need:
            t.notes.append(f"only {free / 2**30:.1f} GiB free in {self.tmp}, {need / 2**30:.1f} GiB needed: "
                           f"{sizes[-1]:,} rows skipped.")
            sizes = sizes[:-1]
        results = []
        for rows in sizes:
            path = self.npy_file(rows, cols, "float32", "stream")
            reps = 1 if rows >= 10_000_000 else self.repeats(3, 2)
            walls, loops, rss = [], [], []
            for _ in range(reps):
                res = self.run_runner("dataset=file", f"dataset.path={path}", "dtype=float32",
                                      "stats.plot=false", "kernels=numpy", config_dir=False)
                walls.append(res.wall)
                loops.append(self.loop_time(res.stdout))
                rss.append(res.maxrss_mb)
            results.append((rows, path.stat().st_size / 1e9, median(walls), median(loops), max(rss)))
            if rows >= 10_000_000:
                path.unlink()
        prev = None
        for rows, gb, wall, loop, rss in results:
            marg = (wall - prev[2]) / ((rows - prev[0]) / 1e6) if prev else float("nan")
            t.add(f"{rows:,}", gb, wall, loop, rows / loop, marg, rss)
            prev = (rows, gb, wall, loop, rss)
        if len(results) >= 2:
            loop_rates = [r[0] / r[3] for r in results[1:]]
            rss_growth = results[-1][4] - results[0][4]
            t.notes.append(f"peak RSS grows by {rss_growth:+.0f} MiB from {results[0][0]:,} to "
                           f"{results[-1][0]:,} rows; loop rows/s at ≥1e6 rows: "
                           + ", ".join(f"{r:,.0f}" for r in loop_rates) + ".")
            self.target("streaming: peak RSS growth 1e5 → largest size", f"{rss_growth:+.0f} MiB",
                        "flat (< 50 MiB)", rss_growth < 50)
        self.emit(t)
        self.section_batch_sweep()

    def section_batch_sweep(self) -> None:
        rows = 1_000_000
        sizes = [256, 1024, 4096, 8192, 16384, 65536] if self.quick else \
            [256, 1024, 2048, 4096, 8192, 16384, 32768, 65536]
        dtypes = ("float32",) if self.quick else ("float32", "float64")
        reps = self.repeats(2, 1)
        path = self.npy_file(rows, 100, "float32", "stream")
        t = Table(f"3b. batch_size sweep: runner loop rows/s, default network, {rows:,}-row float32 file",
                  ["batch_size"] + [f"{d} rows/s" for d in dtypes] + [f"{d} vs 8192" for d in dtypes])
        t.notes.append("`python -m runner dataset=file ... batch_size=B stats.enabled=false stats.plot=false "
                       "kernels=numpy`; "
                       f"the runner's own loop timer (read, forward, write outputs), {reps} interleaved "
                       "repeats, medians. float64 runs cast each float32 batch.")
        loops: dict[tuple[str, int], list[float]] = {}
        for _ in range(reps):
            for dtype in dtypes:
                for bs in sizes:
                    res = self.run_runner("dataset=file", f"dataset.path={path}", f"dtype={dtype}",
                                          f"batch_size={bs}", "stats.enabled=false", "stats.plot=false",
                                          "kernels=numpy", config_dir=False)
                    loops.setdefault((dtype, bs), []).append(self.loop_time(res.stdout))
        rate = {k: rows / median(v) for k, v in loops.items()}
        for bs in sizes:
            t.add(bs, *[rate[(d, bs)] for d in dtypes], *[rate[(d, bs)] / rate[(d, 8192)] for d in dtypes])
        for d in dtypes:
            best = max(sizes, key=lambda b: rate[(d, b)])
            t.notes.append(f"{d}: peak at batch_size={best} ({rate[(d, best)]:,.0f} rows/s, "
                           f"{rate[(d, best)] / rate[(d, 8192)]:.2f}× the default 8192).")
        self.emit(t)

    # -- 4. start-up ----------------------------------------------------------------------------

    def section_startup(self) -> None:
        reps = self.repeats(15, 5)
        # Both sides start from cached bytecode, as after any pip install (which compiles it) or
        # a first run: Hydra's and NumPy's modules have theirs, so the project's get theirs too.
        # Where PYTHONDONTWRITEBYTECODE is set and the install is editable, nothing would cache
        # them and every start would compile them again; the note below gives that cost.
        compile_ms = self.compile_project()
        app = self.tmp / "minimal_hydra_app.py"
        app.write_text(MINIMAL_APP)
        cases: dict[str, Callable[[], list[str]]] = {
            "python -c pass": lambda: [PY, "-c", "pass"],
            "python -c 'import numpy'": lambda: [PY, "-c", "import numpy"],
            "minimal @hydra.main app": lambda: [PY, str(app), f"hydra.run.dir={self.run_dir()}"],
            "python -m runner stats.plot=false": lambda: self.runner_argv("stats.plot=false", config_dir=False),
            "python -m runner (default, figure on)": lambda: self.runner_argv(config_dir=False),
        }
        walls: dict[str, list[float]] = {k: [] for k in cases}
        rss: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(reps + 1):
            for name, argv_of in cases.items():
                res = self.run_argv(argv_of(), name)
                walls[name].append(res.wall)
                rss[name].append(res.maxrss_mb)
        walls = {k: v[1:] for k, v in walls.items()}   # the first round warms the page cache
        hyd = median(walls["minimal @hydra.main app"])
        t = Table(f"4a. Start-up: wall time of whole processes (median of {reps}, interleaved, cwd = the repo)",
                  ["command", "wall s", "vs minimal Hydra app", "peak RSS MiB"])
        for name in cases:
            t.add(name, median(walls[name]), median(walls[name]) / hyd, median(rss[name]))
        fig = median(walls["python -m runner (default, figure on)"]) - median(walls["python -m runner stats.plot=false"])
        t.notes.append(f"the figure (stats.plot=true) costs {fig:.2f} s of wall time per run.")
        t.notes.append("the default run: mlp 100→100→100→10 on 1,000 gaussian rows, stats on.")
        t.notes.append(f"bytecode of runner/ and layers/ compiled first (python -m compileall); compiling "
                       f"them from source instead costs {compile_ms:.0f} ms per start.")
        # The target's ratio pairs the two runs of each round, as the narrow section does.
        r = paired(walls, "python -m runner stats.plot=false", "minimal @hydra.main app")
        t.notes.append(f"default run (figure off) / minimal Hydra app, median of the rounds' ratios: {r:.2f}×.")
        self.target("start-up: default run (figure off) / minimal Hydra app", f"{r:.2f}×", "≤ 1.5×", r <= 1.5)
        # Pieces of the runner's start-up that run outside imports.
        piece = interleaved({
            "git rev-parse HEAD": lambda: run_child(["git", "rev-parse", "HEAD"], cwd=REPO),
            "git status --porcelain --untracked-files=no": lambda: run_child(
                ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"], cwd=REPO),
        }, reps, warmup=1)
        from importlib import metadata

        tm = interleaved({"metadata": lambda: [metadata.version(d) for d in
                                               ("fwdrunner", "numpy", "hydra-core", "omegaconf")]}, reps)
        for name, v in piece.items():
            t.add(f"  (piece) {name} in the repo", median(v), median(v) / hyd, float("nan"))
        t.add("  (piece) importlib.metadata.version × 4, warm", median(tm["metadata"]),
              median(tm["metadata"]) / hyd, float("nan"))
        self.emit(t)
        self.section_importtime()

    @staticmethod
    def compile_project() -> float:
        """Writes the project's bytecode caches; returns the time compiling its sources takes."""
        import compileall

        sources = sorted(p for pkg in ("runner", "layers") for p in (REPO / pkg).rglob("*.py"))
        t0 = time.perf_counter()
        for path in sources:
            compile(path.read_text(), str(path), "exec")
        elapsed = time.perf_counter() - t0
        for pkg in ("runner", "layers"):
            compileall.compile_dir(REPO / pkg, quiet=1)
        return elapsed * 1e3

    def section_importtime(self) -> None:
        argv = self.runner_argv("stats.plot=false", config_dir=False)
        res = self.run_argv([PY, "-X", "importtime", *argv[1:]], "python -X importtime -m runner")
        entries = []
        for line in res.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if m:
                entries.append((int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2, m.group(4)))
        total = sum(e[0] for e in entries)
        t = Table("4b. `python -X importtime -m runner stats.plot=false`: largest imports",
                  ["module (nesting depth)", "cumulative ms", "self ms", "share of all imports"])
        top = sorted((e for e in entries if e[2] <= 1), key=lambda e: -e[1])[:14]
        for self_us, cum_us, depth, name in top:
            t.add(f"{'  ' * depth}{name} ({depth})", cum_us / 1e3, self_us / 1e3, cum_us / total)
        t.notes.append(f"all imports: {total / 1e3:.0f} ms self time in total over {len(entries)} modules "
                       "(-X importtime itself inflates the numbers somewhat).")
        heavy = {}
        for self_us, cum_us, depth, name in entries:
            root = name.split(".")[0]
            heavy[root] = heavy.get(root, 0) + self_us
        t.notes.append("self time by top-level package: " + ", ".join(
            f"{k} {v / 1e3:.0f} ms" for k, v in sorted(heavy.items(), key=lambda kv: -kv[1])[:12]) + ".")
        self.emit(t)

    # -- 5. statistics --------------------------------------------------------------------------

    def section_stats(self) -> None:
        R = 100_000 if self.quick else 300_000
        reps = self.repeats(5, 2)
        t = Table(f"5. Statistics cost: narrow stack 100×5 ({', '.join(STATS_ACTS)}), file input, "
                  f"marginal between {R:,} and {2 * R:,} rows",
                  ["dtype", "stats", "wall R s", "wall 2R s", "µs/row (marginal)",
                   "µs/row (loop timer, marginal)", "on/off (marginal)", "on/off (loop)"])
        t.notes.append("`python -m runner --config-dir <tmp> network=bench_narrow dataset=file dataset.path=... "
                       "dtype=... stats.enabled=true|false stats.plot=false`; the .npy file is in the run's "
                       f"dtype; {reps} rounds, each running both settings at R and then 2R rows; µs/row: "
                       "median of the rounds' marginals, of the wall and of the runner's loop timer; on/off: "
                       "median of the rounds' ratios.")
        for dtype in ("float32", "float64"):
            files = {n: self.npy_file(n, 100, dtype, "stats") for n in (R, 2 * R)}
            progs = {on: lambda n, on=on, d=dtype: self.runner_argv(
                "network=bench_narrow", "dataset=file", f"dataset.path={files[n]}", f"dtype={d}",
                f"stats.enabled={on}", "stats.plot=false") for on in ("true", "false")}
            walls, marginal, loop = self.marginals(progs, R, reps, dtype)
            for on in ("true", "false"):
                t.add(dtype, on, median(walls[(on, R)]), median(walls[(on, 2 * R)]), median(marginal[on]) * 1e6,
                      median(loop[on]) * 1e6, paired(marginal, on, "false"), paired(loop, on, "false"))
            r = paired(marginal, "true", "false")
            self.target(f"stats {dtype}: per-row cost on/off (marginal wall)",
                        f"{r:.2f}× (loop timers {paired(loop, 'true', 'false'):.2f}×)", "≤ 1.5×", r <= 1.5)
            for p in files.values():
                p.unlink(missing_ok=True)
        self.emit(t)

    # -- 6. sweeps --------------------------------------------------------------------------------

    def section_sweep(self) -> None:
        reps = self.repeats(3, 1)
        jobs = 30 if self.quick else 100
        app = self.tmp / "minimal_app.py"
        app.write_text(MINIMAL_APP)

        def sweep(argv: list[str]) -> Callable[[], float]:
            def go() -> float:
                folder = self.run_dir()
                res = check(run_child([*argv, f"hydra.sweep.dir={folder}"], cwd=REPO), " ".join(argv[:4]))
                shutil.rmtree(folder, ignore_errors=True)
                return res.wall
            return go

        runner = [PY, "-m", "runner", "-m", "dataset.rows=10", "stats.plot=false"]
        cases = {
            "minimal Hydra app, 1 job": sweep([PY, str(app), "-m", "+x=range(0,1)"]),
            f"minimal Hydra app, {jobs} jobs": sweep([PY, str(app), "-m", f"+x=range(0,{jobs})"]),
            "runner, 1 job": sweep([*runner, "seed=range(0,1)"]),
            f"runner, {jobs} jobs": sweep([*runner, f"seed=range(0,{jobs})"]),
        }
        walls = interleaved(cases, reps, warmup=0)
        per_job = {who: (median(walls[f"{who}, {jobs} jobs"]) - median(walls[f"{who}, 1 job"])) / (jobs - 1)
                   for who in ("minimal Hydra app", "runner")}
        t = Table(f"6a. Sweep start-up: per-job cost of a {jobs}-job multirun (basic launcher, median of {reps})",
                  ["case", "wall s", "per job s"])
        for name, values in walls.items():
            t.add(name, median(values), per_job["runner" if name.startswith("runner") else "minimal Hydra app"])
        own = per_job["runner"] - per_job["minimal Hydra app"]
        t.notes.append(f"Hydra's own per-job cost {per_job['minimal Hydra app']:.3f} s; the runner's on top of it "
                       f"{own:.3f} s (a 10-row run with its artifacts, statistics on, figure off).")
        self.target("sweep: the runner's own per-job overhead vs Hydra's", f"{own:.3f} s vs {per_job['minimal Hydra app']:.3f} s",
                    "below Hydra's", own < per_job["minimal Hydra app"])
        self.emit(t)

        # 6b. A compute-bound 8-point sweep, serial and on joblib's two workers.
        try:
            import hydra_plugins.hydra_joblib_launcher  # noqa: F401
        except ImportError:
            self.emit(Table("6b. joblib sweep: skipped (pip install -e '.[parallel]')", ["-"]))
            return
        wide = ["--config-dir", str(self.conf), "network=bench_wide", "dataset.rows=16384",
                "stats.plot=false", "seed=range(0,8)"]
        base = [PY, "-m", "runner", "-m", *wide]
        variants = {
            "basic launcher, layers on every core": base,
            "basic launcher, threads=1": [*base, "threads=1"],
            "joblib n_jobs=2 (threads=1 per job)": [*base, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        }
        folders: dict[str, Path] = {}

        def keep(name: str, argv: list[str]) -> Callable[[], float]:
            def go() -> float:
                folder = self.run_dir()
                res = check(run_child([*argv, f"hydra.sweep.dir={folder}"], cwd=REPO), name)
                if name in folders:
                    shutil.rmtree(folders[name], ignore_errors=True)
                folders[name] = Path(folder)
                return res.wall
            return go

        walls = interleaved({k: keep(k, v) for k, v in variants.items()}, self.repeats(2, 1), warmup=0)
        names = list(variants)
        same = all((folders[names[0]] / str(j) / "outputs.npy").read_bytes()
                   == (folders[n] / str(j) / "outputs.npy").read_bytes() for n in names[1:] for j in range(8))
        t = Table("6b. 8-point sweep of the wide MLP on 16,384 rows (float64): wall time", ["launcher", "wall s",
                                                                                          "speed-up vs first row"])
        first = median(walls[names[0]])
        for name in names:
            t.add(name, median(walls[name]), first / median(walls[name]))
        t.notes.append(f"outputs.npy of every job byte-identical across the three: {'yes' if same else 'NO'}.")
        serial = median(walls["basic launcher, threads=1"]) / median(walls[names[2]])
        self.target("sweep: joblib n_jobs=2 vs the basic launcher at threads=1", f"{serial:.2f}×", "≥ 1.7×",
                    serial >= 1.7)
        self.emit(t)
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)

    # -- driver ---------------------------------------------------------------------------------

    def run(self, sections: list[str]) -> None:
        for name in sections:
            t0 = time.perf_counter()
            print(f"--- section {name} ---", flush=True)
            try:
                getattr(self, f"section_{name}")()
            except (ChildFailed, Exception) as err:  # one broken section does not stop the others
                traceback.print_exc()
                self.failures.append(f"{name}: {type(err).__name__}: {err}")
            print(f"--- section {name}: {time.perf_counter() - t0:.0f} s ---", flush=True)
        if self.targets:
            t = Table("Targets", ["what", "measured", "target", "met"])
            for row in self.targets:
                t.add(*row)
            self.emit(t)
        for f in self.failures:
            print(f"FAILED {f}", file=sys.stderr)

    def markdown(self, info: dict[str, str], command: str, elapsed: float) -> str:
        lines = ["# Benchmark results", "",
                 f"Generated by `{command}` on {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} "
                 f"({elapsed / 60:.1f} min).", "", "| machine | |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in info.items()]
        lines.append("")
        for table in self.tables:
            lines += [table.markdown(), ""]
        if self.failures:
            lines += ["### Failed sections", ""] + [f"- {f}" for f in self.failures] + [""]
        return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, rows and activations (~5 min)")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                    help=f"run only these sections: {', '.join(SECTIONS)}")
    ap.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown to FILE")
    ap.add_argument("--repeats", type=int, default=0, help="override every section's repeat count")
    ap.add_argument("--activations", nargs="+", metavar="NAME", help="narrow section: only these")
    ap.add_argument("--narrow-rows", type=int, default=0, help="narrow section: rows (default 300k)")
    ap.add_argument("--tmpdir", default=None, help="where the temporary files go (default: $TMPDIR)")
    args = ap.parse_args(argv)
    command = "python benchmarks/run.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    t0 = time.perf_counter()
    suite = Suite(args)
    info = machine_info()
    print("\n".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    try:
        suite.run(list(args.only or SECTIONS))
    finally:
        shutil.rmtree(suite.tmp, ignore_errors=True)
    if args.markdown:
        Path(args.markdown).write_text(suite.markdown(info, command.strip(), time.perf_counter() - t0))
        print(f"wrote {args.markdown}")
    return 1 if suite.failures else 0


if __name__ == "__main__":
    sys.exit(main())
