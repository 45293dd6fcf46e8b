"""Per-layer statistics, figures and sweep summaries through the real CLI, and the shipped study."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import Run, run_cli
from layers.activations import allow_compiled
from runner.results import load_run, load_sweep
from runner.stats import LayerStats

PNG = b"\x89PNG\r\n\x1a\n"


def test_stats_equal_a_recomputation_from_the_saved_activations(cli):
    _, run = cli("save_activations=true", "dataset.rows=3000", "batch_size=1000")
    with np.load(run.path / "activations.npz") as z:
        acts = {k: z[k] for k in z.files}
    layers = run.stats["layers"]
    assert [layer["name"] for layer in layers] == ["h1", "h2", "out"]
    for i, layer in enumerate(layers):
        a = acts[f"a{i}"]
        assert layer["index"] == i and layer["shape"] == list(a.shape)
        assert layer["mean"] == pytest.approx(a.mean(), rel=1e-12)
        assert layer["std"] == pytest.approx(a.std(), rel=1e-12)
        assert (layer["min"], layer["max"]) == (a.min(), a.max())
        assert layer["frac_zero"] == np.count_nonzero(a == 0) / a.size
        assert layer["dead_units"] == int(np.all(a == 0, axis=0).sum())
        assert layer["nonfinite"] == 0
        assert sum(layer["hist"]["counts"]) == a.size
    # ReLU is unbounded: no saturation; sigmoid saturation is the fraction within 1% of 0 or 1.
    assert layers[0]["frac_saturated"] is None
    a1 = acts["a1"]
    assert layers[1]["frac_saturated"] == np.count_nonzero((a1 <= 0.01) | (a1 >= 0.99)) / a1.size
    assert layers[1]["hist"]["edges"][0] == 0.0 and layers[1]["hist"]["edges"][-1] == 1.0
    assert (layers[0]["frac_zero"] > 0.3) and (layers[0]["dead_units"] == 0)


def test_stats_do_not_depend_on_the_batch_size(cli):
    _, a = cli("batch_size=64", "save_activations=true", "dataset.rows=5000", "stats.plot=false")
    _, b = cli("batch_size=8192", "dataset.rows=5000", "stats.plot=false")
    for la, lb in zip(a.stats["layers"], b.stats["layers"]):
        for key in ("mean", "std", "min", "max", "frac_zero"):
            assert la[key] == pytest.approx(lb[key], rel=1e-12, abs=1e-15), key
        assert la["hist"]["edges"] == lb["hist"]["edges"]
    # Fed the same values, the accumulator is exact whatever the batches.
    with np.load(a.path / "activations.npz") as z:
        a0 = z["a0"]
    whole, pieces = LayerStats(a0.shape[1]), LayerStats(a0.shape[1])
    # with the kernels the run used (it records them): compiled and NumPy sums differ in rounding
    with allow_compiled(a.record["kernels"] == "compiled"):
        whole.update(a0)
        for start in range(0, len(a0), 777):
            pieces.update(a0[start:start + 777])
        assert whole.result() == pieces.result()
        assert whole.result() == {k: a.stats["layers"][0][k] for k in whole.result()}


def test_stats_can_be_turned_off_and_figures_too(cli):
    _, run = cli("stats.enabled=false")
    names = {p.name for p in run.path.iterdir()}
    assert "stats.json" not in names and "activations.png" not in names
    _, run = cli("stats.plot=false")
    names = {p.name for p in run.path.iterdir()}
    assert "stats.json" in names and "activations.png" not in names


def test_activations_figure_is_a_png_with_one_panel_per_layer(cli):
    _, run = cli()
    data = run.bytes("activations.png")
    assert data.startswith(PNG)
    width = int.from_bytes(data[16:20], "big")
    assert width >= 3 * 150  # three panels side by side
    assert run.record["artifacts"]["activations.png"]


def test_histogram_range_for_unbounded_layers_can_be_set(cli):
    _, run = cli("stats.range=[-1,3]", "stats.bins=8", "stats.plot=false")
    relu, sigmoid = run.stats["layers"][0], run.stats["layers"][1]
    assert relu["hist"]["edges"] == [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert sum(relu["hist"]["counts"]) == 1000 * 100
    # Bounded activations keep their own output range.
    assert sigmoid["hist"]["edges"][0] == 0.0 and sigmoid["hist"]["edges"][-1] == 1.0


def test_sweep_summary_has_one_row_per_job_and_marks_failures(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "network.layers.1.act=tanh,nosuch,sigmoid", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = list(csv.DictReader((sweep / "sweep_summary.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1", "2"]
    assert [r["status"] for r in rows] == ["completed", "failed", "completed"]
    assert [r["network.layers.1.act"] for r in rows] == ["tanh", "nosuch", "sigmoid"]
    assert "unknown activation 'nosuch'" in rows[1]["error"]
    assert rows[1]["h1.mean"] == ""
    stats0 = json.loads((sweep / "0" / "stats.json").read_text())["layers"]
    assert float(rows[0]["h2.mean"]) == stats0[1]["mean"]
    assert float(rows[0]["h2.frac_saturated"]) == stats0[1]["frac_saturated"]
    assert (sweep / "sweep.png").read_bytes().startswith(PNG)
    assert "sweep summary" in (sweep / "runner.log").read_text()
    # The standalone command reads the same directory.
    again = run_cli(str(sweep), module="runner.summarize", cwd=tmp_path)
    assert again.returncode == 1 and "nosuch" in again.stdout + again.stderr


def test_load_run_and_load_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "wb_width=0.1,0.2", "stats.plot=false", "dataset.rows=50", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = load_run(sweep / "1")
    assert run.status == "completed" and run.config.wb_width == 0.2
    assert isinstance(run.outputs, np.memmap) and run.outputs.shape == (50, 10)
    np.testing.assert_array_equal(run.params["w0"], Run(sweep / "1").params["w0"])
    assert [layer["name"] for layer in run.stats] == ["h1", "h2", "out"]
    loaded = load_sweep(sweep)
    assert len(loaded.jobs) == 2 and [row["wb_width"] for row in loaded.summary] == ["0.1", "0.2"]


def saturation(layer):
    return layer["frac_saturated"]


@pytest.mark.parametrize("experiment", ["weight_init", "weight_init_relu"])
def test_shipped_weight_init_study_shows_the_book_result(tmp_path, experiment):
    sweep = tmp_path / experiment
    proc = run_cli("-m", f"experiment={experiment}", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (sweep / "sweep.png").exists() and (sweep / "sweep_summary.csv").exists()
    jobs = {json.loads((d / ".hydra" / "overrides.yaml").read_text().split("wb_width=")[1].split("\n")[0]
                       .strip("'\" ")): json.loads((d / "stats.json").read_text())["layers"]
            for d in sorted(sweep.iterdir()) if d.is_dir() and d.name.isdigit()}
    if experiment == "weight_init":
        big, small, xavier = jobs[1], jobs[0.01], jobs[0.1]
        for layer in big:    # saturation at 0 and 1
            assert saturation(layer) > 0.3 and layer["std"] > 0.35
        for layer in small:  # collapse onto 0.5
            assert abs(layer["mean"] - 0.5) < 0.01 and layer["std"] < 0.03 and saturation(layer) == 0
        for layer in xavier:  # spread, without saturation
            assert 0.08 < layer["std"] < 0.3 and saturation(layer) < 0.01
    else:
        small, xavier, he = jobs[0.01], jobs[0.1], jobs[0.1414213562373095]
        ratio = lambda layers: layers[-1]["std"] / layers[0]["std"]  # noqa: E731
        # 0.01 vanishes to the scale of the biases; Xavier shrinks layer after layer; He holds.
        assert ratio(small) < 0.2 and small[-1]["std"] < 0.01
        assert ratio(xavier) < 0.5 and all(a["std"] > b["std"] for a, b in zip(xavier, xavier[1:]))
        assert 0.7 < ratio(he) < 1.5 and min(layer["std"] for layer in he) > 0.5
