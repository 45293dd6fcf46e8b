"""Runs and sweeps as Python objects, for notebooks and scripts.

``load_run`` reads one run directory, ``load_sweep`` every job of a multirun
sweep directory. Outputs are memory-mapped, so opening a large run is cheap;
parameters, statistics and saved activations are loaded fully.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runner import summarize as _summarize

__all__ = ["Run", "Sweep", "load_run", "load_sweep"]

CONFIG = Path(".hydra") / "config.yaml"
PARAMS = "params.npz"
OUTPUTS = "outputs.npy"
ACTIVATIONS = "activations.npz"


@dataclass(repr=False)
class Run:
    """One run directory.

    Attributes:
        path: The run directory.
        config: Composed config (omegaconf DictConfig) or None without ``.hydra/config.yaml``.
        status: ``run.json`` status; ``missing`` without ``run.json``.
        record: The ``run.json`` dict, or None.
        overrides: Override strings from ``.hydra/overrides.yaml``.
        params: Parameter arrays from ``params.npz`` by name, or None.
        outputs: ``outputs.npy`` memory-mapped read-only, or None.
        stats: The ``layers`` list of ``stats.json``, or None.
        activations: Arrays from ``activations.npz`` by name, or None.
        problems: Artifacts of an unfinished run that exist but could not be read.
    """

    path: Path
    config: Any = None
    status: str = _summarize.MISSING
    record: dict | None = None
    overrides: list[str] = field(default_factory=list)
    params: dict[str, np.ndarray] | None = None
    outputs: np.ndarray | None = None
    stats: list[dict] | None = None
    activations: dict[str, np.ndarray] | None = None
    problems: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        shape = None if self.outputs is None else tuple(self.outputs.shape)
        return f"Run(path={str(self.path)!r}, status={self.status!r}, outputs={shape})"


@dataclass(repr=False)
class Sweep:
    """A multirun sweep directory.

    Attributes:
        path: The sweep directory.
        jobs: One Run per job directory, in job order (missing or failed jobs
            hold whatever they left on disk).
        summary: Summary rows, as in ``sweep_summary.csv``.
        columns: Summary column names.
    """

    path: Path
    jobs: list[Run]
    summary: list[dict[str, Any]]
    columns: list[str]
    _summary: Any = None

    def table(self) -> str:
        """The summary as a fixed-width text table."""
        return self._summary.table()

    def __len__(self) -> int:
        return len(self.jobs)

    def __repr__(self) -> str:
        done = sum(run.status == _summarize.COMPLETED for run in self.jobs)
        return f"Sweep(path={str(self.path)!r}, jobs={len(self.jobs)}, completed={done})"


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _load_outputs(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:
        # An empty array cannot be memory-mapped; it costs nothing to load.
        array = np.load(path, allow_pickle=False)
        if array.size:
            raise
        return array


def _load_config(path: Path):
    from omegaconf import OmegaConf  # deferred: import cost only when asked

    return OmegaConf.load(path)


def _read_run(path: Path) -> Run:
    """Read whatever a run directory holds.

    For a completed run an unreadable artifact raises; for any other status it
    is recorded in ``problems`` and left as None.
    """
    status, record, _ = _summarize.read_record(path)
    run = Run(path=path, status=status, record=record, overrides=_summarize.read_overrides(path))
    strict = status == _summarize.COMPLETED
    loaders = (
        ("config", CONFIG, _load_config),
        ("params", PARAMS, _load_npz),
        ("outputs", OUTPUTS, _load_outputs),
        ("stats", _summarize.STATS, lambda p: json.loads(p.read_text(encoding="utf-8"))["layers"]),
        ("activations", ACTIVATIONS, _load_npz),
    )
    for attr, name, load in loaders:
        file = path / name
        if not file.is_file():
            continue
        try:
            setattr(run, attr, load(file))
        except Exception as err:
            if strict:
                raise ValueError(f"cannot read {file}: {type(err).__name__}: {err}") from err
            run.problems.append(f"{name}: {type(err).__name__}: {err}")
    return run


def load_run(path: str | os.PathLike) -> Run:
    """Load one run directory.

    Raises:
        FileNotFoundError: ``path`` has no ``run.json`` (not a run directory).
        ValueError: A completed run's artifact exists but cannot be read.
    """
    path = Path(path)
    record = path / _summarize.RECORD
    if not record.is_file():
        raise FileNotFoundError(f"not a run directory: {path} (missing {record})")
    return _read_run(path)


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Load every job directory of a multirun sweep directory (writes nothing).

    Raises:
        FileNotFoundError, NotADirectoryError: ``path`` is not a directory.
        ValueError: ``path`` holds no job directory.
    """
    summary = _summarize.summarize(path, plot=False, write=False)
    jobs = [_read_run(info.path) for info in summary.jobs]
    return Sweep(path=Path(path), jobs=jobs, summary=summary.rows, columns=summary.columns,
                 _summary=summary)
