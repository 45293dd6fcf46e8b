"""Where a job runs: a fresh run directory, or a sweep job that resumes, and its thread budget."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from runner.errors import ConfigError
from runner.layout import ARTIFACTS, RECORD

# Settings that change how a run is shown, never what it computes.
PRESENTATION_KEYS = ("progress", "debug")


def config_digest(cfg: dict[str, Any]) -> str:
    """sha256 of the resolved config, less the presentation settings; recorded in run.json."""
    kept = {k: v for k, v in cfg.items() if k not in PRESENTATION_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def run_dir_taken(run_dir: str | os.PathLike) -> ConfigError:
    """The error for a single run pointed at a directory that already holds a run."""
    return ConfigError(f"hydra.run.dir={run_dir}: already holds a run ({RECORD}); choose a new directory",
                       key="hydra.run.dir")


def prepare_run_dir(run_dir: Path, digest: str, *, multirun: bool) -> bool:
    """Makes ``run_dir`` ready for a run; returns False when the job is already done.

    A single run never reuses a directory that holds a run. A sweep job whose directory holds
    a ``completed`` record of the same config is skipped, so a sweep run again into the same
    ``hydra.sweep.dir`` resumes; any other earlier record (failed, interrupted, killed, or of
    another config) moves with its artifacts to ``previous/<k>/`` beside the new run.
    """
    record_path = run_dir / RECORD
    if not record_path.exists():
        return True
    if not multirun:
        raise run_dir_taken(run_dir)
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {}
    if record.get("status") == "completed" and record.get("config_sha256") == digest:
        return False
    previous = run_dir / "previous"
    k = sum(1 for _ in previous.iterdir()) if previous.exists() else 0
    keep = previous / str(k)
    keep.mkdir(parents=True)
    for name in (*ARTIFACTS, RECORD):
        if (run_dir / name).exists():
            shutil.move(run_dir / name, keep / name)
    return True


def default_threads(launcher: Any) -> int | None:
    """BLAS threads for one job when the config sets none: the cores shared among parallel jobs.

    joblib runs ``n_jobs`` jobs at once on this machine's cores; a submitit job gets
    ``cpus_per_task`` cores. Otherwise (one job at a time) every core.
    """
    if launcher is None:
        return None
    cores = os.cpu_count() or 1
    n_jobs = launcher.get("n_jobs")
    if isinstance(n_jobs, int) and n_jobs != 0:
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 is every core
        return max(1, cores // parallel)
    cpus = launcher.get("cpus_per_task")
    return cpus if isinstance(cpus, int) and cpus > 0 else None
