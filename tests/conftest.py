"""Shared helpers: the CLI as a real subprocess, and Hydra composition of the shipped configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path, module: str = "runner", env: dict | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs ``python -m <module> <args>`` in ``cwd`` and returns the finished process."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    if env and "HYDRA_FULL_ERROR" in env:
        full_env["HYDRA_FULL_ERROR"] = env["HYDRA_FULL_ERROR"]
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


class Run:
    """A finished run directory, read the way a user's tool would."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def record(self) -> dict:
        return json.loads((self.path / "run.json").read_text())

    @property
    def stats(self) -> dict:
        return json.loads((self.path / "stats.json").read_text())

    @property
    def outputs(self) -> np.ndarray:
        return np.load(self.path / "outputs.npy", allow_pickle=False)

    @property
    def params(self) -> dict[str, np.ndarray]:
        with np.load(self.path / "params.npz", allow_pickle=False) as z:
            return dict(z)

    def bytes(self, name: str) -> bytes:
        return (self.path / name).read_bytes()


@pytest.fixture
def cli(tmp_path):
    """``cli(*overrides)`` runs the runner into a fresh run dir under tmp_path; returns (proc, Run)."""
    counter = iter(range(10**6))

    def call(*overrides: str, check: bool = True, cwd: Path | None = None, env: dict | None = None):
        run_dir = tmp_path / f"run{next(counter)}"
        proc = run_cli(*overrides, f"hydra.run.dir={run_dir}", cwd=cwd or tmp_path, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"runner failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc, Run(run_dir)

    return call


def gaussian_input(rows: int, features: int, seed: int = 0) -> np.ndarray:
    """The default dataset, drawn independently of the runner.

    Rows come in blocks of 65536; block k is drawn whole from its own generator seeded with
    [seed, 1, k] (the weights use [seed, 0]), and the last block is cut to the rows asked for.
    """
    block = 65536
    parts = []
    for k, start in enumerate(range(0, rows, block)):
        n = min(block, rows - start)
        parts.append(np.random.default_rng([seed, 1, k]).standard_normal((n, features)))
    return np.concatenate(parts) if parts else np.empty((0, features))
