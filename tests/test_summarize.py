"""Tests for runner.summarize, runner.results and runner.figures on fake sweep directories."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from runner.results import Run, load_run, load_sweep
from runner.stats import LayerStats
from runner.summarize import build_rows, read_job, split_override, summarize

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def layer_dicts(wb_width: float, acts=("sigmoid", "sigmoid")) -> list[dict]:
    """stats.json layers for a small sigmoid network, computed with LayerStats."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6))
    layers = []
    for i, act in enumerate(acts):
        w = rng.standard_normal((6, 6)) * wb_width
        u = x @ w
        x = np.tanh(u) if act == "tanh" else 1.0 / (1.0 + np.exp(-u))
        out_range = (-1.0, 1.0) if act == "tanh" else (0.0, 1.0)
        acc = LayerStats(6, bins=10, output_range=out_range)
        acc.update(x)
        res = acc.result()
        layers.append({"index": i, "name": f"layer{i + 1}", "kind": "middle" if i == 0 else "output",
                       "act": act, "shape": [200, 6], **res})
    return layers


def make_job(sweep: Path, job: str, overrides: list[str], status: str | None, *,
             error: dict | None = None, layers: list[dict] | None = None, wb_width: float = 0.1) -> Path:
    d = sweep / job
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"wb_width": wb_width, "batch_size": 50}))
    if status is not None:
        (d / "run.json").write_text(json.dumps({"status": status, "error": error, "duration_s": 0.5}))
    if layers is not None:
        (d / "stats.json").write_text(json.dumps({"layers": layers}))
        np.save(d / "outputs.npy", np.arange(200 * 6, dtype=np.float32).reshape(200, 6))
        np.savez(d / "params.npz", **{"layer1.w": np.eye(6), "layer1.b": np.zeros(6)})
    return d


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "multirun" / "12-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / "logs").mkdir()            # not a job directory
    make_job(root, "0", ["wb_width=1.0"], "completed", layers=layer_dicts(1.0), wb_width=1.0)
    make_job(root, "1", ["wb_width=0.01", "network.layers.1.act=tanh"], "completed",
             layers=layer_dicts(0.01, ("sigmoid", "tanh")), wb_width=0.01)
    make_job(root, "2", ["wb_width=-1"], "failed", error={"type": "ValueError", "message": "wb_width must be > 0"})
    make_job(root, "3", ["wb_width=0.1"], None)          # died before starting
    make_job(root, "10", ["wb_width=0.3"], "completed", layers=layer_dicts(0.3), wb_width=0.3)
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "runner.summarize", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    height, width = matplotlib.image.imread(path).shape[:2]
    return width, height


LAYER_COLS = [f"layer{i}.{f}" for i in (1, 2) for f in ("mean", "std", "frac_saturated", "frac_zero")]


def test_csv_columns_and_values(sweep: Path):
    summary = summarize(sweep)
    with open(sweep / "sweep_summary.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        columns = reader.fieldnames
    assert columns == ["job", "status", "overrides", "wb_width", "network.layers.1.act", "error", *LAYER_COLS]
    assert summary.columns == columns
    assert [r["job"] for r in rows] == ["0", "1", "2", "3", "10"]
    assert [r["status"] for r in rows] == ["completed", "completed", "failed", "missing", "completed"]
    assert [r["wb_width"] for r in rows] == ["1.0", "0.01", "-1", "0.1", "0.3"]
    assert [r["network.layers.1.act"] for r in rows] == ["", "tanh", "", "", ""]
    assert rows[1]["overrides"] == "wb_width=0.01 network.layers.1.act=tanh"
    assert rows[0]["error"] == "" and rows[2]["error"] == "wb_width must be > 0"
    assert rows[3]["error"] == "no run.json"
    assert all(rows[2][c] == "" and rows[3][c] == "" for c in LAYER_COLS)
    # Floats round-trip exactly through the CSV.
    expected = layer_dicts(0.01, ("sigmoid", "tanh"))
    assert float(rows[1]["layer2.std"]) == expected[1]["std"]
    assert float(rows[1]["layer1.frac_saturated"]) == expected[0]["frac_saturated"]
    assert float(rows[0]["layer2.frac_zero"]) == 0.0
    # Saturation at weight std 1 exceeds saturation at 0.01, as in the book's figures.
    assert float(rows[0]["layer1.frac_saturated"]) > float(rows[1]["layer1.frac_saturated"]) == 0.0
    # The in-memory rows agree with the file.
    assert summary.rows[1]["layer2.std"] == expected[1]["std"]
    assert summary.rows[3]["layer1.mean"] is None
    assert [r["job"] for r in summary.unfinished] == [2, 3]


def test_sweep_png_and_table(sweep: Path):
    summary = summarize(sweep)
    width, height = png_size(sweep / "sweep.png")
    assert (width, height) == (int((1.6 + 2 * 2.2) * 100), int((0.4 + 5 * 2.0) * 100))
    assert summary.notes == []
    table = summary.table().splitlines()
    assert table[0].split()[:4] == ["job", "status", "wb_width", "network.layers.1.act"]
    assert len(table) == 2 + 5
    assert "failed" in table[4] and "wb_width must be > 0" in table[4]
    assert "missing" in table[5]
    assert not list(sweep.glob(".*.tmp"))


def test_no_plot_and_no_write(sweep: Path):
    summarize(sweep, plot=False)
    assert (sweep / "sweep_summary.csv").is_file() and not (sweep / "sweep.png").exists()
    (sweep / "sweep_summary.csv").unlink()
    summary = summarize(sweep, write=False)
    assert len(summary.rows) == 5
    assert not (sweep / "sweep_summary.csv").exists() and not (sweep / "sweep.png").exists()


def test_cli_exit_codes(sweep: Path, tmp_path: Path):
    res = run_cli(str(sweep), "--no-plot")
    assert res.returncode == 1, res.stderr
    assert "job 2 (failed)" in res.stderr and "job 3 (missing)" in res.stderr
    assert res.stdout.splitlines()[0].startswith("job")
    assert not (sweep / "sweep.png").exists()

    ok = tmp_path / "ok"
    ok.mkdir()
    make_job(ok, "0", ["wb_width=1.0"], "completed", layers=layer_dicts(1.0))
    make_job(ok, "1", ["wb_width=0.1"], "completed", layers=layer_dicts(0.1))
    res = run_cli(str(ok))
    assert res.returncode == 0, res.stderr
    assert png_size(ok / "sweep.png")[0] > 0

    empty = tmp_path / "empty"
    empty.mkdir()
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    for bad in (empty, afile, tmp_path / "nope"):
        res = run_cli(str(bad))
        assert res.returncode == 2
        assert "Traceback" not in res.stderr
        assert str(bad) in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_running_job_is_not_completed(tmp_path: Path):
    make_job(tmp_path, "0", ["wb_width=1.0"], "running")
    summary = summarize(tmp_path, plot=False, write=False)
    assert summary.rows[0]["status"] == "running" and summary.rows[0]["error"] == ""
    assert len(summary.unfinished) == 1


def test_split_override_and_build_rows_are_pure(sweep: Path):
    assert split_override("wb_width=0.1") == ("wb_width", "0.1")
    assert split_override("+extra.key=a=b") == ("extra.key", "a=b")
    assert split_override("~dataset") == ("dataset", "~")
    jobs = [read_job(sweep / name) for name in ("0", "2")]
    columns, rows = build_rows(jobs)
    assert columns[:5] == ["job", "status", "overrides", "wb_width", "error"]
    assert rows[1]["status"] == "failed" and rows[1]["layer1.mean"] is None


def test_load_run(sweep: Path):
    run = load_run(sweep / "0")
    assert isinstance(run, Run) and run.status == "completed"
    assert isinstance(run.outputs, np.memmap) and run.outputs.shape == (200, 6)
    assert run.outputs[3, 2] == 20.0
    np.testing.assert_array_equal(run.params["layer1.w"], np.eye(6))
    assert run.config.wb_width == 1.0
    assert run.record["duration_s"] == 0.5
    assert [layer["name"] for layer in run.stats] == ["layer1", "layer2"]
    assert run.activations is None and run.overrides == ["wb_width=1.0"]
    assert "completed" in repr(run) and "(200, 6)" in repr(run)
    with pytest.raises(FileNotFoundError, match="run.json"):
        load_run(sweep / "3")


def test_load_sweep(sweep: Path):
    s = load_sweep(sweep)
    assert not (sweep / "sweep_summary.csv").exists()
    assert [r.status for r in s.jobs] == ["completed", "completed", "failed", "missing", "completed"]
    assert s.jobs[2].record["error"]["type"] == "ValueError" and s.jobs[2].outputs is None
    assert s.jobs[3].record is None and s.jobs[3].config.wb_width == 0.1
    assert isinstance(s.jobs[4].outputs, np.memmap)
    assert s.summary == summarize(sweep, plot=False, write=False).rows
    assert s.summary[1]["wb_width"] == "0.01"
    assert len(s) == 5 and "jobs=5" in repr(s)


def test_plot_activations_size(tmp_path: Path):
    from runner.figures import plot_activations

    path = tmp_path / "act.png"
    plot_activations(layer_dicts(1.0), path, title="wb_width=1.0")
    assert png_size(path) == (int(2 * 2.2 * 100), int((2.4 + 0.3) * 100))
    with pytest.raises(ValueError):
        plot_activations([], tmp_path / "none.png")
