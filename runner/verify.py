"""``python -m runner.verify <run dir>``: re-execute a completed run and compare its artifacts.

1. The run must be ``completed`` (a ``running`` record may be a run killed with ``kill -9``).
2. Every artifact must still match the sha256 in ``run.json`` (nothing was changed after the run).
3. The saved config is re-executed in a temporary directory, from the directory the run started
   in, and every artifact's bytes are compared with the record. ``runner.log`` and ``run.json``
   (timings) are exempt.

Prints ``identical`` and exits 0, or lists what differs (with the largest absolute difference for
arrays and statistics) and exits 1. A path that is not a run directory exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from runner.artifacts import file_hashes
from runner.record import RECORD


def _numbers(node: Any) -> Iterator[float]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _numbers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _numbers(value)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield float(node)


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def difference(name: str, old: Path, new: Path) -> str:
    """A short description of how two versions of an artifact differ."""
    if name.endswith(".npy"):
        a, b = np.load(old, mmap_mode="r"), np.load(new, mmap_mode="r")
        return f"max abs diff {_max_abs_diff(a, b):.3g}" if a.shape == b.shape else f"shape {a.shape} vs {b.shape}"
    if name.endswith(".npz"):
        with np.load(old) as za, np.load(new) as zb:
            if sorted(za.files) != sorted(zb.files):
                return f"arrays {sorted(za.files)} vs {sorted(zb.files)}"
            worst = max(((k, _max_abs_diff(za[k], zb[k])) for k in za.files), key=lambda kv: kv[1])
            return f"max abs diff {worst[1]:.3g} (in {worst[0]})"
    if name.endswith(".json"):
        a = list(_numbers(json.loads(old.read_text())))
        b = list(_numbers(json.loads(new.read_text())))
        if len(a) != len(b):
            return "different structure"
        return f"max abs diff {max((abs(x - y) for x, y in zip(a, b)), default=0.0):.3g}"
    return "bytes differ"


def verify(run_dir: Path) -> list[str]:
    """Returns the list of problems; empty when the run reproduces exactly."""
    record = json.loads((run_dir / RECORD).read_text())
    if record.get("status") != "completed":
        return [f"{RECORD} says status {record.get('status')!r}, not 'completed': nothing to verify"]
    recorded: dict[str, str] = record.get("artifacts") or {}
    now = file_hashes(run_dir, list(recorded))
    changed = [f"{name}: changed after the run (its sha256 no longer matches {RECORD})"
               for name, digest in recorded.items() if now.get(name) != digest]
    if changed:
        return changed
    cwd = record.get("cwd") if record.get("cwd") and Path(record["cwd"]).is_dir() else str(Path.cwd())
    with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
        again = Path(tmp) / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "runner", "--config-path", str((run_dir / ".hydra").resolve()),
             "--config-name", "config", f"hydra.run.dir={again}", "progress=false"],
            cwd=cwd, capture_output=True, text=True)
        if proc.returncode != 0:
            return [f"re-execution failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"]
        redone = file_hashes(again, list(recorded))
        return [f"{name}: {difference(name, run_dir / name, again / name)}"
                for name, digest in recorded.items() if redone.get(name) != digest]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.verify", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    if not (args.run_dir / RECORD).is_file():
        print(f"error: {args.run_dir}: not a run directory (no {RECORD})", file=sys.stderr)
        return 2
    problems = verify(args.run_dir)
    if not problems:
        print("identical")
        return 0
    for problem in problems:
        print(problem)
    return 1


if __name__ == "__main__":
    sys.exit(main())
