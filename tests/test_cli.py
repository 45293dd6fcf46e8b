"""The CLI end to end, as real subprocesses on temp dirs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import REPO, Run, gaussian_input, run_cli


def relu(u):
    return np.where(u > 0, u, 0.0)


def sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def tanh(u):
    return np.tanh(u)


def softmax(u):
    e = np.exp(u - u.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def by_hand(x, params, acts):
    for i, act in enumerate(acts):
        x = act(x @ params[f"w{i}"] + params[f"b{i}"])
    return x


def test_default_run_writes_every_artifact_and_matches_a_forward_pass_by_hand(cli):
    proc, run = cli()
    # The summary table names every layer with its kind, shape, activation and parameter count.
    for row in (["h1", "middle", "100→100", "ReLU", "10,100"], ["h2", "middle", "100→100", "sigmoid", "10,100"],
                ["out", "output", "100→10", "softmax", "1,010"]):
        assert any(all(cell in line for cell in row) for line in proc.stdout.splitlines()), row
    assert "total" in proc.stdout and "21,210" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("done: 1000 rows")
    names = {p.name for p in run.path.iterdir()}
    assert {".hydra", "runner.log", "outputs.npy", "params.npz", "stats.json", "run.json"} <= names
    assert {"config.yaml", "overrides.yaml", "hydra.yaml"} <= {p.name for p in (run.path / ".hydra").iterdir()}
    assert "activations.npz" not in names
    params = run.params
    assert sorted(params) == ["b0", "b1", "b2", "w0", "w1", "w2"]
    assert params["w0"].shape == (100, 100) and params["b2"].shape == (10,)
    expected = by_hand(gaussian_input(1000, 100), params, [relu, sigmoid, softmax])
    out = run.outputs
    assert out.shape == (1000, 10) and out.dtype == np.float64
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)


def test_run_record_has_the_contracted_fields_and_hashes(cli):
    import hashlib

    _, run = cli("seed=5")
    rec = run.record
    assert rec["status"] == "completed" and rec["error"] is None
    assert rec["seed"] == 5 and rec["dtype"] == "float64" and rec["rows"] == 1000
    assert rec["duration_s"] >= 0 and rec["start_time"] <= rec["end_time"]
    # a small run keeps the NumPy kernels (kernels=auto): numba is not even imported
    assert rec["kernels"] == "numpy"
    assert set(rec["versions"]) == {"fwdrunner", "python", "numpy", "hydra-core", "omegaconf"}
    assert rec["versions"]["numpy"] == np.__version__
    assert rec["host"]
    for name in ("outputs.npy", "params.npz", "stats.json"):
        assert rec["artifacts"][name] == hashlib.sha256(run.bytes(name)).hexdigest()
    log = (run.path / "runner.log").read_text()
    assert "h1" in log and "done: 1000 rows" in log


def test_gelu_run_records_the_compiled_kernels_and_matches_the_numpy_path(cli):
    numba = pytest.importorskip("numba")
    overrides = ("network.layers.0.act=GELU", "stats.plot=false")
    _, fast = cli(*overrides, "kernels=compiled")
    _, slow = cli(*overrides, "kernels=numpy")
    assert (fast.record["kernels"], slow.record["kernels"]) == ("compiled", "numpy")
    assert fast.record["versions"]["numba"] == numba.__version__
    assert "numba" not in slow.record["versions"]
    # the two paths differ by a few ulps at most (both are checked against mpmath)
    np.testing.assert_allclose(fast.outputs, slow.outputs, rtol=1e-14, atol=1e-16)


def test_compiled_kernels_run_where_numba_has_no_cache_directory(cli):
    # A read-only install with no writable home and no NUMBA_CACHE_DIR: numba finds no cache
    # locator. Only its user-provided locator, with NUMBA_CACHE_DIR unset, leaves it in that state
    # here (tests run as a user who can write anywhere).
    numba = pytest.importorskip("numba")
    if not hasattr(numba.core.config, "CACHE_LOCATOR_CLASSES"):
        pytest.skip("this numba cannot be given its cache locators")
    env = {"NUMBA_CACHE_LOCATOR_CLASSES": "numba.core.caching.UserProvidedCacheLocator", "NUMBA_CACHE_DIR": ""}
    overrides = ("network.layers.0.act=GELU", "stats.plot=false", "kernels=compiled")
    proc, uncached = cli(*overrides, env=env)
    _, cached = cli(*overrides)
    assert uncached.record["kernels"] == "compiled"
    assert proc.stderr.count("RuntimeWarning: numba finds no writable cache directory") == 1
    assert "set NUMBA_CACHE_DIR" in proc.stderr and "Traceback" not in proc.stderr
    assert uncached.bytes("outputs.npy") == cached.bytes("outputs.npy")
    assert uncached.stats == cached.stats


def test_numba_is_recorded_only_for_the_jobs_that_used_the_compiled_kernels(tmp_path):
    # the basic launcher runs both jobs in one process: numba stays loaded after job 0
    numba = pytest.importorskip("numba")
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "kernels=compiled,numpy", "network.layers.0.act=GELU", "stats.plot=false",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first, second = (Run(sweep / str(i)).record for i in range(2))
    assert (first["kernels"], second["kernels"]) == ("compiled", "numpy")
    assert first["versions"]["numba"] == numba.__version__
    assert "numba" not in second["versions"]


def test_compiled_kernels_asked_for_but_switched_off_is_a_config_error(tmp_path):
    proc = run_cli("kernels=compiled", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                   env={"FWDRUNNER_COMPILED": "0"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "kernels='compiled': expected numba to be installed" in proc.stderr
    assert not (tmp_path / "run" / "outputs.npy").exists()


def test_git_state_is_recorded_inside_a_checkout(tmp_path, cli):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    for cmd in (["git", "init", "-q"], ["git", "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q",
                                        "--allow-empty", "-m", "x"]):
        subprocess.run(cmd, cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    _, run = cli(cwd=repo)
    assert run.record["git"] == {"commit": head, "dirty": False}
    _, outside = cli()
    assert outside.record["git"] is None


def test_overrides_reach_the_run(cli):
    _, run = cli("wb_width=0.01", "seed=3", "network.layers.1.act=tanh", "dataset.rows=5000")
    params, out = run.params, run.outputs
    assert out.shape == (5000, 10)
    assert run.record["seed"] == 3
    # wb_width scales draws of a standard normal: their sample std is close to 0.01.
    assert 0.0097 < params["w1"].std() < 0.0103
    np.testing.assert_allclose(out, by_hand(gaussian_input(5000, 100), params, [relu, tanh, softmax]),
                               rtol=1e-12, atol=1e-15)
    saved = yaml.safe_load((run.path / ".hydra" / "overrides.yaml").read_text())
    assert saved == ["wb_width=0.01", "seed=3", "network.layers.1.act=tanh", "dataset.rows=5000"]


def test_same_seed_same_bytes_other_seed_other_outputs(cli):
    _, a = cli("seed=7")
    _, b = cli("seed=7")
    _, c = cli("seed=8")
    assert a.bytes("outputs.npy") == b.bytes("outputs.npy")
    assert a.bytes("params.npz") == b.bytes("params.npz")
    assert not np.allclose(a.outputs, c.outputs)
    # The dataset has its own seed: changing the weights' seed leaves the input alone.
    assert not np.array_equal(a.params["w0"], c.params["w0"])


def test_batch_size_does_not_change_results(cli):
    _, one = cli("batch_size=1000")
    _, many = cli("batch_size=7")
    np.testing.assert_allclose(many.outputs, one.outputs, rtol=1e-13, atol=1e-16)
    assert one.bytes("params.npz") == many.bytes("params.npz")


def test_float32_end_to_end(cli):
    _, run = cli("dtype=float32")
    assert run.outputs.dtype == np.float32
    params = run.params
    assert {a.dtype for a in params.values()} == {np.dtype(np.float32)}
    _, ref = cli("dtype=float64")
    # float32 parameters are the float64 draws rounded.
    np.testing.assert_array_equal(params["w0"], ref.params["w0"].astype(np.float32))
    np.testing.assert_allclose(run.outputs, ref.outputs, rtol=2e-4, atol=1e-6)


def test_save_activations_holds_u_and_a_of_every_layer(cli):
    _, run = cli("save_activations=true", "dataset.rows=300", "batch_size=128")
    params = run.params
    with np.load(run.path / "activations.npz", allow_pickle=False) as z:
        acts = dict(z)
    assert sorted(acts) == ["a0", "a1", "a2", "u0", "u1", "u2"]
    x = gaussian_input(300, 100)
    for i, act in enumerate([relu, sigmoid, softmax]):
        u = x @ params[f"w{i}"] + params[f"b{i}"]
        np.testing.assert_allclose(acts[f"u{i}"], u, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(acts[f"a{i}"], act(u), rtol=1e-12, atol=1e-15)
        x = act(u)
    np.testing.assert_array_equal(acts["a2"], run.outputs)
    assert not list(run.path.glob(".*part*")) and not list(run.path.glob("*.tmp"))


def test_multirun_sweeps_wb_width_with_the_same_draws(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "wb_width=1,0.1,0.01", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = [Run(sweep / str(i)) for i in range(3)]
    for run, width in zip(runs, (1, 0.1, 0.01)):
        assert run.record["status"] == "completed"
        assert yaml.safe_load((run.path / ".hydra" / "overrides.yaml").read_text()) == [f"wb_width={width}"]
    p = [r.params for r in runs]
    for key in ("w0", "b0", "w2"):
        np.testing.assert_allclose(p[0][key] / p[1][key], 10.0, rtol=1e-14)
        np.testing.assert_allclose(p[1][key] / p[2][key], 10.0, rtol=1e-14)
    assert (sweep / "multirun.yaml").exists()


COUNT_COMPOSES = """
import runpy, sys
from hydra._internal.hydra import Hydra
compose = Hydra.compose_config
def counted(self, *args, **kwargs):
    print("compose", kwargs.get("run_mode"), file=sys.stderr)
    return compose(self, *args, **kwargs)
Hydra.compose_config = counted
sys.argv = ["runner", *sys.argv[1:]]
runpy.run_module("runner", run_name="__main__")
"""


def test_the_run_mode_comes_from_the_command_line_without_an_extra_composition(tmp_path):
    # Hydra alone composes twice per start (once just to read hydra.mode); the runner once.
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", COUNT_COMPOSES, f"hydra.run.dir={run_dir}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("compose")] == ["compose RunMode.RUN"]
    assert Run(run_dir).record["status"] == "completed"
    # An explicit hydra.mode still decides, as in Hydra: a sweep without -m.
    sweep = tmp_path / "sweep"
    proc = run_cli("hydra.mode=MULTIRUN", "seed=1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [Run(sweep / str(i)).record["status"] for i in range(2)] == ["completed", "completed"]


def test_layer_wb_width_overrides_the_top_level_one(cli):
    _, run = cli("wb_width=0.5", "+network.layers.1.wb_width=0.001")
    _, ref = cli("wb_width=0.001")
    p, q = run.params, ref.params
    np.testing.assert_array_equal(p["w1"], q["w1"])
    np.testing.assert_allclose(p["w0"] / q["w0"], 500.0, rtol=1e-14)


def test_cfg_job_prints_the_composed_config(tmp_path):
    proc = run_cli("--cfg", "job", "seed=11", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["seed"] == 11 and cfg["dataset"]["type"] == "gaussian"
    assert [layer["n"] for layer in cfg["network"]["layers"]] == [100, 100, 10]
    assert not (tmp_path / "outputs").exists()


def test_help_lists_config_groups_and_options(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    groups = proc.stdout.split("== Configuration groups ==")[1].split("==")[0]
    assert "network: mlp" in groups
    assert "dataset: file, gaussian" in groups


def test_rerun_from_saved_config_reproduces_outputs_from_another_directory(tmp_path, cli):
    _, first = cli("seed=4", "wb_width=0.2", "network.layers.0.act=tanh")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = tmp_path / "again"
    proc = run_cli("--config-path", str(first.path / ".hydra"), "--config-name", "config",
                   f"hydra.run.dir={again}", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert (again / "outputs.npy").read_bytes() == first.bytes("outputs.npy")
    assert (again / "runner.log").exists() and not (again / "__main__.log").exists()


def test_default_run_dirs_are_under_outputs(tmp_path):
    proc = run_cli("dataset.rows=10", "stats.plot=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = list((tmp_path / "outputs").glob("*/*"))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    proc = run_cli("-m", "dataset.rows=10,11", "stats.plot=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p.name for p in (tmp_path / "outputs" / "multirun").glob("*/*/*") if p.is_dir())
    assert jobs == ["0", "1"]


def test_a_run_dir_that_holds_a_run_is_never_reused(tmp_path, cli):
    _, first = cli()
    before = first.bytes("run.json")
    proc = run_cli(f"hydra.run.dir={first.path}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "already holds a run" in proc.stderr
    assert first.bytes("run.json") == before


def test_file_dataset_runs_on_a_npy_file(tmp_path, cli):
    x = np.random.default_rng(0).uniform(-2, 2, size=(257, 100))
    np.save(tmp_path / "x.npy", x)
    _, run = cli("dataset=file", "dataset.path=x.npy", "batch_size=50")
    np.testing.assert_allclose(run.outputs, by_hand(x, run.params, [relu, sigmoid, softmax]), rtol=1e-12, atol=1e-15)
    assert run.record["dataset"]["path"] == str(tmp_path / "x.npy")
    # The width comes from the file when no layer sets it.
    x4 = np.ones((3, 4))
    np.save(tmp_path / "x4.npy", x4)
    _, small = cli("dataset=file", "dataset.path=x4.npy", "network.layers.0.prev=null")
    assert small.params["w0"].shape == (4, 100)


def test_plugins_register_layers_and_activations(tmp_path, cli):
    (tmp_path / "myplugin.py").write_text(
        "import numpy as np\n"
        "from layers import register_activation, register_layer, MiddleLayer\n"
        "@register_activation\n"
        "def cube(x):\n"
        "    return x * x * x\n"
        "@register_layer(name='no_bias')\n"
        "class NoBias(MiddleLayer):\n"
        "    def reset_parameters(self, rng):\n"
        "        super().reset_parameters(rng)\n"
        "        self.b[:] = 0\n"
    )
    _, run = cli("plugins=[myplugin]", "network.layers.0.act=cube", "+network.layers.0.kind=no_bias",
                 "stats.plot=false", env={"PYTHONPATH": str(tmp_path)})
    params = run.params
    assert not params["b0"].any() and params["b1"].any()
    expected = by_hand(gaussian_input(1000, 100), params, [lambda u: u ** 3, sigmoid, softmax])
    np.testing.assert_allclose(run.outputs, expected, rtol=1e-11, atol=1e-15)


def test_a_plugins_registrations_end_with_its_job(tmp_path):
    # The basic launcher runs every job of a sweep in one process, as joblib's reused workers do.
    (tmp_path / "cubeplugin.py").write_text(
        "from layers import register_activation\n"
        "@register_activation\n"
        "def cube(x):\n"
        "    return x * x * x\n"
    )
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "plugins=[cubeplugin],[],[cubeplugin]", "network.layers.0.act=cube", "stats.plot=false",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2
    records = [Run(sweep / str(i)).record for i in range(3)]
    assert [r["status"] for r in records] == ["completed", "failed", "completed"]
    assert "unknown activation 'cube'" in records[1]["error"]["message"]
    assert Run(sweep / "0").bytes("outputs.npy") == Run(sweep / "2").bytes("outputs.npy")


@pytest.mark.parametrize(
    ("overrides", "code", "words"),
    [
        (["network.layers.1.prev=50"], 2, ["network.layers[1].prev=50 does not match network.layers[0].n=100"]),
        (["+network.layers.1.kind=hidden"], 2, ["network.layers[1].kind", "'hidden'", "allowed:", "middle"]),
        (["network.layers.1.act=sigmod"], 2, ["network.layers[1].act=sigmod", "sigmoid"]),
        (["network.layers.0.n=abc"], 1, ["network.layers", "abc"]),
        (["dataset=file", "dataset.path=missing.npy"], 2, ["dataset.path=missing.npy", "no such file"]),
        (["+network.layers.0._target_=os.system"], 2, ["+network.layers.0._target_=os.system", "refused"]),
        (["dtype=float16"], 2, ["dtype='float16'", "float32, float64"]),
        (["batch_size=0"], 2, ["batch_size=0", "positive int"]),
        (["wb_width=-1"], 2, ["wb_width=-1", "finite positive"]),
        (["kernels=fast"], 2, ["kernels='fast'", "auto, compiled, numpy"]),
        (["+dataset.color=red"], 2, ["dataset.color", "gaussian", "accepted: rows=1000"]),
        (["+network.layers.0.act_dic.alpha=0.1"], 2, ["network.layers[0].act=ReLU", "alpha"]),
        (["plugins=[no_such_module_xyz]"], 2, ["plugins[0]=no_such_module_xyz"]),
    ],
)
def test_bad_input_gets_one_clear_line_and_no_traceback(tmp_path, overrides, code, words):
    run_dir = tmp_path / "run"
    proc = run_cli(*overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    message = "\n".join(lines)
    for word in words:
        assert word in message, (word, message)
    if code == 2:
        assert len(lines) == 1, lines
        assert not (run_dir / "outputs.npy").exists()
        if (run_dir / "run.json").exists():  # refused before Hydra started: no record at all
            rec = json.loads((run_dir / "run.json").read_text())
            assert rec["status"] == "failed" and rec["error"]["message"] in lines[0]


def test_debug_shows_the_traceback_with_project_frames(tmp_path):
    proc = run_cli("network.layers.1.prev=50", "debug=true", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "runner/build.py" in proc.stderr


def test_installed_package_ships_its_configs(tmp_path):
    """A plain (non-editable) install runs from any directory: the configs are package data."""
    import subprocess

    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    assert (target / "runner" / "conf" / "config.yaml").is_file()
    assert (target / "runner" / "conf" / "network" / "mlp.yaml").is_file()
    work = tmp_path / "work"
    work.mkdir()
    env = {"PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}
    proc = run_cli("dataset.rows=20", "stats.plot=false", f"hydra.run.dir={work / 'r'}", cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    probe = subprocess.run([sys.executable, "-c", "import runner; print(runner.__file__)"], cwd=work,
                           env={**__import__("os").environ, **env}, capture_output=True, text=True)
    assert probe.stdout.strip().startswith(str(target))
    assert np.load(work / "r" / "outputs.npy").shape == (20, 10)
