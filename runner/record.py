"""``run.json``: the record of a run: status, times, settings, environment, artifact hashes."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runner.artifacts import write_json

from runner.layout import RECORD


@functools.lru_cache(maxsize=8)  # once per process: a sweep's jobs share their checkout
def git_state(cwd: str) -> dict[str, Any] | None:
    """The commit and dirty flag of the checkout ``cwd`` is in, or None outside one."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def environment() -> dict[str, Any]:
    """Host, platform and versions for run.json; imported here, where they are used."""
    import platform
    import socket

    import hydra
    import numpy
    import omegaconf

    from runner import __version__

    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "versions": {
            "fwdrunner": __version__,
            "python": sys.version.split()[0],
            "numpy": numpy.__version__,
            "hydra-core": hydra.__version__,
            "omegaconf": omegaconf.__version__,
        },
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class RunRecord:
    """Keeps ``run.json`` in step with the run: ``running`` at the start, then the outcome."""

    def __init__(self, run_dir: str | os.PathLike, fields: dict[str, Any]) -> None:
        self.path = Path(run_dir) / RECORD
        self._t0 = time.perf_counter()
        self.data: dict[str, Any] = {"status": "running", "error": None, "start_time": _now(),
                                     "end_time": None, "duration_s": None, **fields}
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)

    def finish(self, status: str, *, error: BaseException | None = None, **fields: Any) -> None:
        self.data.update(fields)
        self.data["status"] = status
        self.data["error"] = None if error is None else {"type": type(error).__name__, "message": str(error)}
        numba = sys.modules.get("numba")
        if numba is not None and self.data.get("kernels") == "compiled" and "versions" in self.data:
            # the run used the compiled kernels (layers.compiled), which numba built
            self.data["versions"]["numba"] = numba.__version__
        self.data["end_time"] = _now()
        self.data["duration_s"] = round(time.perf_counter() - self._t0, 6)
        self.save()
