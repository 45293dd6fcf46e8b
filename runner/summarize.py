"""Sweep summary built from the job directories of a multirun on disk.

Reads only files, so it works after the fact, from another process, and
whatever launcher ran the jobs. A job directory is a numerically named
sub-directory of the sweep directory holding ``.hydra/overrides.yaml``,
``run.json`` and, for completed jobs, ``stats.json``.

Usage: ``python -m runner.summarize SWEEP_DIR [--no-plot]``. Exit status 0
when every job completed, 1 when some job did not (failed, missing, still
running, ...), 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from runner.artifacts import write_text
from runner.record import RECORD

__all__ = ["JobInfo", "NoJobsError", "Summary", "build_rows", "job_dirs", "read_job", "read_record", "summarize", "main"]

CSV_NAME = "sweep_summary.csv"
PNG_NAME = "sweep.png"
STATS = "stats.json"
OVERRIDES = Path(".hydra") / "overrides.yaml"
MISSING = "missing"
UNREADABLE = "unreadable"
COMPLETED = "completed"
LAYER_FIELDS = ("mean", "std", "frac_saturated", "frac_zero")
_FIXED = ("job", "status", "overrides", "error")


class NoJobsError(ValueError):
    """The sweep directory holds no job directory."""


@dataclass
class JobInfo:
    """What a job directory says about its job."""

    job: int
    path: Path
    overrides: list[str]
    status: str
    error: str
    layers: list[dict] | None


def job_dirs(sweep_dir: str | os.PathLike) -> list[Path]:
    """Numerically named sub-directories of ``sweep_dir``, in numeric order."""
    root = Path(sweep_dir)
    found = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name))


def read_record(job_dir: str | os.PathLike) -> tuple[str, dict | None, str]:
    """``(status, run.json dict or None, error message)`` of one job directory.

    No ``run.json`` means the job died before starting: status ``missing``.
    A ``run.json`` that cannot be parsed gives status ``unreadable``.
    """
    path = Path(job_dir) / RECORD
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return MISSING, None, f"no {RECORD}"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        return UNREADABLE, None, f"{RECORD} is not valid JSON: {err}"
    if not isinstance(record, dict):
        return UNREADABLE, None, f"{RECORD} does not hold an object"
    status = str(record.get("status") or UNREADABLE)
    error = record.get("error")
    if isinstance(error, dict):
        message = str(error.get("message") or error.get("type") or "")
    else:
        message = "" if error is None else str(error)
    return status, record, message


def read_overrides(job_dir: str | os.PathLike) -> list[str]:
    """The override strings in ``.hydra/overrides.yaml`` (empty when absent)."""
    path = Path(job_dir) / OVERRIDES
    if not path.is_file():
        return []
    import yaml  # deferred: only summaries need it

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return []
    return [str(item) for item in data] if isinstance(data, list) else []


def read_layers(job_dir: str | os.PathLike) -> list[dict] | None:
    """The ``layers`` list of ``stats.json``, or None when absent or unreadable."""
    try:
        data = json.loads((Path(job_dir) / STATS).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    layers = data.get("layers") if isinstance(data, dict) else None
    return layers if isinstance(layers, list) else None


def read_job(job_dir: str | os.PathLike) -> JobInfo:
    """Collect everything the summary needs from one job directory."""
    path = Path(job_dir)
    status, _, error = read_record(path)
    return JobInfo(job=int(path.name) if path.name.isdigit() else -1, path=path,
                   overrides=read_overrides(path), status=status, error=error,
                   layers=read_layers(path))


def split_override(text: str) -> tuple[str, str]:
    """``(parameter, value)`` of one override, e.g. ``"+a.b=1"`` -> ``("a.b", "1")``.

    A deletion ``~key`` or ``~key=value`` gives value ``"~"`` or ``"~value"``.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if key.startswith("~"):
        key, value = key[1:], "~" + value
    return key.lstrip("+"), value


def _layer_names(layers: list[dict]) -> list[str]:
    names, seen = [], set()
    for i, layer in enumerate(layers):
        name = str(layer.get("name") or f"layer{layer.get('index', i)}")
        if name in seen:
            name = f"{name}#{layer.get('index', i)}"
        seen.add(name)
        names.append(name)
    return names


def build_rows(jobs: Sequence[JobInfo]) -> tuple[list[str], list[dict[str, Any]]]:
    """Summary columns and one row dict per job; pure (reads no files).

    Columns: job, status, overrides, one per override parameter (first-seen
    order), error, then ``{layer}.{mean,std,frac_saturated,frac_zero}`` for
    every layer name in order. Missing values are None.
    """
    params: list[str] = []
    layer_order: list[str] = []
    parsed = []
    for info in jobs:
        pairs = [split_override(o) for o in info.overrides]
        parsed.append(pairs)
        for key, _ in pairs:
            if key not in params:
                params.append(key)
        if info.layers:
            for name in _layer_names(info.layers):
                if name not in layer_order:
                    layer_order.append(name)
    layer_cols = [f"{name}.{f}" for name in layer_order for f in LAYER_FIELDS]
    taken = set(_FIXED) | set(layer_cols)
    # A parameter named like a fixed column keeps its own column.
    param_cols = {p: (f"override:{p}" if p in taken else p) for p in params}
    columns = ["job", "status", "overrides", *param_cols.values(), "error", *layer_cols]
    rows = []
    for info, pairs in zip(jobs, parsed):
        row: dict[str, Any] = dict.fromkeys(columns)
        row.update(job=info.job, status=info.status, overrides=" ".join(info.overrides),
                   error="" if info.status == COMPLETED else info.error)
        for key, value in pairs:
            row[param_cols[key]] = value
        if info.layers:
            for name, layer in zip(_layer_names(info.layers), info.layers):
                for f in LAYER_FIELDS:
                    row[f"{name}.{f}"] = layer.get(f)
        rows.append(row)
    return columns, rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def _short(value: Any, width: int = 40) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[:width - 3] + "..."


@dataclass
class Summary:
    """Sweep summary: one row per job, the same columns as the CSV."""

    path: Path
    columns: list[str]
    rows: list[dict[str, Any]]
    jobs: list[JobInfo] = field(default_factory=list, repr=False)
    notes: list[str] = field(default_factory=list)

    @property
    def unfinished(self) -> list[dict[str, Any]]:
        """Rows of jobs that did not complete."""
        return [row for row in self.rows if row["status"] != COMPLETED]

    def csv_text(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([_cell(row[c]) for c in self.columns])
        return buf.getvalue()

    def table(self) -> str:
        """Fixed-width text table for logs (floats to 4 significant digits)."""
        # The parameter columns already spell out the overrides.
        has_params = bool(self.columns[3:self.columns.index("error")])
        cols = [c for c in self.columns if not (c == "overrides" and has_params)]
        cells = [[_short(row[c]) for c in cols] for row in self.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
        return "\n".join(line.rstrip() for line in lines)


def _empty_row_message(info: JobInfo) -> str:
    if info.status == COMPLETED:
        return f"no {STATS}"
    if info.error:
        return f"{info.status}: {_short(info.error, 60)}"
    return info.status


def summarize(sweep_dir: str | os.PathLike, *, plot: bool = True, write: bool = True) -> Summary:
    """Summarise every job of a sweep directory.

    Writes ``sweep_summary.csv`` (and ``sweep.png`` when ``plot`` and
    matplotlib is importable; otherwise the reason goes to ``notes``) into
    ``sweep_dir`` unless ``write`` is False.

    Raises:
        FileNotFoundError: ``sweep_dir`` does not exist.
        NotADirectoryError: ``sweep_dir`` is not a directory.
        NoJobsError: (a ValueError) ``sweep_dir`` holds no numerically named job directory.
    """
    root = Path(sweep_dir)
    if not root.exists():
        raise FileNotFoundError(f"sweep directory does not exist: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a directory: {root}")
    dirs = job_dirs(root)
    if not dirs:
        raise NoJobsError(f"no job directories (0, 1, ...) in {root}")
    jobs = [read_job(d) for d in dirs]
    columns, rows = build_rows(jobs)
    summary = Summary(path=root, columns=columns, rows=rows, jobs=jobs)
    if not write:
        return summary
    write_text(root / CSV_NAME, summary.csv_text())
    if plot:
        from runner.figures import PlottingUnavailable, plot_sweep

        try:
            plot_sweep([(" ".join(j.overrides), j.layers) for j in jobs], root / PNG_NAME,
                       messages=[None if j.layers else _empty_row_message(j) for j in jobs])
        except PlottingUnavailable as err:
            summary.notes.append(f"{PNG_NAME} not written: {err}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.summarize",
                                     description="Summarise the job directories of a sweep.")
    parser.add_argument("sweep_dir", help="multirun sweep directory holding job dirs 0, 1, ...")
    parser.add_argument("--no-plot", action="store_true", help=f"do not draw {PNG_NAME}")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.sweep_dir, plot=not args.no_plot)
    except (FileNotFoundError, NotADirectoryError, NoJobsError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    print(summary.table())
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    unfinished = summary.unfinished
    if unfinished:
        listed = ", ".join(f"job {row['job']} ({row['status']})" for row in unfinished)
        print(f"not completed: {listed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
