"""Shared plumbing of the benchmark suite: interleaved timing, child processes, tables.

Every comparison in the suite is measured side by side in one run: the cases of a comparison
are executed in round-robin order (case A, case B, ..., then A, B, ... again) and each case's
median is reported, so that a slow phase of a shared machine hits all of them alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# Untimed pause before each timed case in-process: after a multi-threaded call OpenBLAS's
# worker threads (and PyTorch's OpenMP ones) keep spinning for up to about 0.1 s, and on two
# cores whatever runs next pays for them, most of all the layers' single-threaded BLAS blocks.
SETTLE_S = 0.2


def interleaved(cases: Mapping[str, Callable[[], Any]], repeats: int, *, warmup: int = 1,
                settle: float = 0.0, alternate: bool = False) -> dict[str, list[float]]:
    """Wall times (s) of each case, ``repeats`` rounds of round-robin after ``warmup`` rounds,
    each timed call after an untimed pause of ``settle`` seconds (see ``SETTLE_S``).

    ``alternate`` runs every other round in reverse order, so that no case always goes first
    (after a pause) or last; the i-th times of all cases then come from one stretch of time.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    for r in range(repeats):
        order = list(cases.items())
        for name, fn in (order[::-1] if alternate and r % 2 else order):
            if settle:
                time.sleep(settle)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


@dataclass
class ChildResult:
    wall: float           # seconds, from spawn to exit (includes interpreter start-up)
    maxrss_mb: float      # peak resident set size of the child, MiB (getrusage via wait4)
    user: float
    sys: float
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_child(argv: Sequence[str], *, cwd: str | os.PathLike | None = None,
              env: Mapping[str, str] | None = None, timeout: float = 1800) -> ChildResult:
    """Runs ``argv`` to completion; wall time and the child's own rusage (not the suite's)."""
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f".bench_child_{os.getpid()}.out"
    err_path = out_path.with_suffix(".err")
    rss_path = out_path.with_suffix(".rss")
    # Linux keeps the peak RSS of a process across fork and execve, so a child forked from this
    # (large) process would report at least our own peak; /usr/bin/time forks the command from a
    # small process and reports the command's own peak.
    wrap = [TIME, "-f", "%M", "-o", str(rss_path)] if TIME else []
    with open(out_path, "w+b") as out, open(err_path, "w+b") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(wrap + list(argv), cwd=cwd, env=dict(env) if env is not None else None,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    maxrss_kb = float("nan")
    if TIME:
        try:
            maxrss_kb = float(rss_path.read_text().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            pass
    for p in (out_path, err_path, rss_path):
        p.unlink(missing_ok=True)
    return ChildResult(wall, maxrss_kb / 1024.0, usage.ru_utime, usage.ru_stime,
                       proc.returncode, stdout, stderr)


class ChildFailed(RuntimeError):
    pass


def check(result: ChildResult, what: str) -> ChildResult:
    if not result.ok:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise ChildFailed(f"{what} exited with {result.returncode}:\n{tail}")
    return result


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append(list(cells))

    def _cells(self) -> list[list[str]]:
        return [[fmt(c) for c in row] for row in self.rows]

    def text(self) -> str:
        cells = [self.headers] + self._cells()
        widths = [max(len(r[i]) if i < len(r) else 0 for r in cells) for i in range(len(self.headers))]
        lines = [self.title, "=" * len(self.title)]
        for k, row in enumerate(cells):
            lines.append("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))))
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.headers) + " |",
                 "|" + "|".join(" --- " for _ in self.headers) + "|"]
        for row in self._cells():
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "n/a"
        a = abs(value)
        if a == 0:
            return "0"
        if a >= 1000:
            return f"{value:,.0f}"
        if a >= 100:
            return f"{value:.0f}"
        if a >= 10:
            return f"{value:.1f}"
        if a >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def machine_info() -> dict[str, str]:
    """CPU model and cores (lscpu), numpy and its BLAS (threadpoolctl), python, torch."""
    info: dict[str, str] = {"python": sys.version.split()[0], "numpy": np.__version__}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", "?").strip()
        info["cores"] = fields.get("CPU(s)", "?").strip()
        for key in ("L2 cache", "L3 cache"):
            if key in fields:
                info[key] = fields[key].strip()
    except (OSError, subprocess.SubprocessError):
        info["cpu"] = "?"
        info["cores"] = str(os.cpu_count())
    try:
        from threadpoolctl import threadpool_info

        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            p = blas[0]
            info["blas"] = (f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, "
                            f"{p.get('threading_layer')}, {p.get('num_threads')} threads)")
    except ImportError:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    torch_version = torch_available()
    info["torch"] = torch_version or "not installed"
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    info["env"] = ", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "(no OPENBLAS_/OMP_/MKL_ variables)"
    try:
        info["load average at start"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        pass
    return info


_TORCH_VERSION: str | None | bool = False


def torch_available() -> str | None:
    """torch's version when it is importable in a child process (the suite imports it lazily)."""
    global _TORCH_VERSION
    if _TORCH_VERSION is False:
        r = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True, timeout=120)
        _TORCH_VERSION = r.stdout.strip() if r.returncode == 0 else None
    return _TORCH_VERSION  # type: ignore[return-value]
