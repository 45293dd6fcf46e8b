"""Bad input, injection attempts, interruption and verification, through the real CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, run_cli
from runner.errors import ConfigError


def assert_refused(proc, run_dir: Path, code: int, words: list[str]) -> None:
    """Exit code, the words of the message, no traceback, and no completed record left behind."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    message = proc.stderr
    for word in words:
        assert word in message, (word, message)
    if code == 2:
        assert len([line for line in message.splitlines() if line.strip()]) == 1, message
    record = run_dir / "run.json"
    if record.exists():
        assert json.loads(record.read_text())["status"] == "failed"
    assert not (run_dir / "outputs.npy").exists()


def data_file(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"{kind}.npy"
    if kind == "three_d":
        np.save(path, np.zeros((2, 3, 4)))
    elif kind == "objects":
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind == "truncated":
        np.save(path, np.zeros((100, 100)))
        path.write_bytes(path.read_bytes()[:5000])
    elif kind == "corrupt":
        path.write_bytes(b"this is not a numpy file at all" * 10)
    elif kind == "narrow":
        np.save(path, np.zeros((10, 7)))
    elif kind == "folder":
        path.mkdir()
    return str(path)


CORPUS = [
    # (overrides, exit code, words in the message)
    (["network.layers=[]"], 2, ["network.layers: expected at least one layer"]),
    (["network.layers.0.n=0"], 2, ["network.layers[0].n=0: expected a positive int"]),
    (["network.layers.2.n=-5"], 2, ["network.layers[2].n=-5: expected a positive int"]),
    (["network.layers.0.prev=0"], 2, ["network.layers[0].prev=0: expected a positive int"]),
    (["network.layers.2.prev=7"], 2, ["network.layers[2].prev=7 does not match network.layers[1].n=100"]),
    (["seed=-1"], 2, ["seed=-1: expected an int >= 0"]),
    (["wb_width=nan"], 2, ["wb_width=nan: expected a finite positive number"]),
    (["wb_width=inf"], 2, ["wb_width=inf: expected a finite positive number"]),
    (["+network.layers.1.wb_width=0"], 2, ["network.layers[1].wb_width=0", "finite positive"]),
    (["network.layers.0.act=leaky_ReLU", "+network.layers.0.act_dic.alpha=abc"], 2,
     ["network.layers[0].act=leaky_ReLU", "alpha"]),
    (["network.layers.0.act=GELU", "+network.layers.0.act_dic.approximate=foo"], 2,
     ["network.layers[0].act=GELU", "approximate"]),
    (["network.layers.1.act=sigmoid", "+network.layers.1.act_dic.beta=2"], 2, ["sigmoid takes no parameters"]),
    (["network.layers.1.name=h1"], 2, ["network.layers[1].name=h1", "already used"]),
    (["dataset.rows=0"], 2, ["dataset.rows=0: expected a positive int"]),
    (["dataset.type=nosuch"], 2, ["dataset.type", "'nosuch'", "gaussian"]),
    (["dataset.seed=-3"], 2, ["dataset.seed=-3"]),
    (["dataset.features=50"], 2, ["network.layers[0].prev=100 does not match the dataset width 50"]),
    (["batch_size=-1"], 2, ["batch_size=-1: expected a positive int"]),
    (["threads=0"], 2, ["threads=0: expected a positive int"]),
    (["dtype=int32"], 2, ["dtype='int32'", "float32, float64"]),
    (["stats.bins=abc"], 1, ["stats.bins", "abc"]),
    (["seed=one"], 1, ["seed", "one"]),
    (["network=nosuch"], 1, ["network", "nosuch"]),
    (["dataset.rows=1000000000", "batch_size=1000000000"], 2, ["batch_size=1000000000", "bytes of memory", "lower batch_size"]),
    (["save_activations=true", "dataset.rows=100000000000", "stats.enabled=false"], 2,
     ["save_activations=true: the run would write about", "free"]),
    (["dataset=file", "dataset.path={folder}"], 2, ["folder.npy", "expected a file"]),
    (["dataset=file", "dataset.path={three_d}"], 2, ["three_d.npy", "expected a 2-D array", "(2, 3, 4)"]),
    (["dataset=file", "dataset.path={objects}"], 2, ["objects.npy"]),
    (["dataset=file", "dataset.path={truncated}"], 2, ["truncated.npy"]),
    (["dataset=file", "dataset.path={corrupt}"], 2, ["corrupt.npy"]),
    (["dataset=file", "dataset.path={narrow}"], 2, ["network.layers[0].prev=100 does not match the dataset width 7"]),
    (["plugins=[broken_plugin]"], 2, ["plugins[0]=broken_plugin", "ZeroDivisionError"]),
]


@pytest.mark.parametrize(("overrides", "code", "words"), CORPUS, ids=[" ".join(c[0])[:60] for c in CORPUS])
def test_bad_input_corpus(tmp_path, overrides, code, words):
    (tmp_path / "broken_plugin.py").write_text("1 / 0\n")
    files = {k: data_file(tmp_path, k) for k in ("three_d", "objects", "truncated", "corrupt", "narrow", "folder")
             if any(f"{{{k}}}" in o for o in overrides)}
    run_dir = tmp_path / "run"
    args = [o.format(**files) for o in overrides]
    proc = run_cli(*args, f"hydra.run.dir={run_dir}", "stats.plot=false", cwd=tmp_path,
                   env={"PYTHONPATH": str(tmp_path)})
    assert_refused(proc, run_dir, code, [w.format(**files) for w in words])


# ---------------------------------------------------------------------------------------------
# Configs cannot run code


MARKER_CODE = "import pathlib; pathlib.Path({path!r}).write_text('ran')"


def test_yaml_callbacks_and_logging_factories_are_refused(tmp_path):
    marker = tmp_path / "marker"
    for n, node in enumerate([
        {"hydra": {"callbacks": {"evil": {"_target_": "builtins.exec", "_args_": [MARKER_CODE.format(path=str(marker))]}}}},
        {"hydra": {"job_logging": {"version": 1, "handlers": {"h": {"()": "builtins.exec"}}}}},
        {"network": {"layers": [{"n": 3, "_target_": "os.system"}]}},
    ]):
        conf = tmp_path / f"conf{n}"
        conf.mkdir()
        import yaml

        (conf / "config.yaml").write_text(yaml.safe_dump(node))
        proc = run_cli("--config-path", str(conf), "--config-name", "config", f"hydra.run.dir={tmp_path / 'r'}",
                       cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "refused" in proc.stderr and str(conf / "config.yaml") in proc.stderr
        assert not marker.exists()
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("override", [
    "+network.layers.0._target_=os.system",
    "hydra.callbacks.evil._target_=builtins.exec",
    "+dataset._target_=os.system",
])
def test_target_overrides_are_refused_before_anything_runs(tmp_path, override):
    proc = run_cli(override, f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert proc.returncode == 2 and "_target_ is refused" in proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("override", "words"), [
    ("+network.layers.0.kind=os.system", "unknown layer kind 'os.system'"),
    ("network.layers.0.act=os.system", "unknown activation 'os.system'"),
    ("dataset.type=os.system", "unknown dataset type 'os.system'"),
])
def test_registry_names_never_import_anything(tmp_path, override, words):
    proc = run_cli(override, f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert proc.returncode == 2 and words in proc.stderr


def test_plugins_load_only_from_the_explicit_list(tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "sneaky.py").write_text(
        MARKER_CODE.format(path=str(marker)) + "\nfrom layers import register_activation\n"
        "@register_activation\ndef sneaky(x):\n    return x\n")
    proc = run_cli("network.layers.0.act=sneaky", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path,
                   env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2 and "unknown activation 'sneaky'" in proc.stderr
    assert not marker.exists()


def test_pickled_data_is_never_unpickled(tmp_path):
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return (exec, (MARKER_CODE.format(path=str(marker)),))

    path = tmp_path / "evil.npy"
    np.save(path, np.array([[Payload(), 1]], dtype=object), allow_pickle=True)
    proc = run_cli("dataset=file", f"dataset.path={path}", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert proc.returncode == 2 and "evil.npy" in proc.stderr
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# Fuzzing: random stacks either run with the declared shapes or fail with a ConfigError


def base_config() -> dict:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from runner.config import register_configs

    register_configs()
    with initialize_config_module(config_module="runner.conf", version_base=None):
        cfg = compose(config_name="config", overrides=["dataset.rows=7", "stats.plot=false", "progress=false"])
    return OmegaConf.to_container(cfg, resolve=True)


BASE = None
acts = st.sampled_from(["ReLU", "sigmoid", "tanh", "softmax", "leaky_ReLU", "GELU", "ELU", "nosuch", "", "step"])
values = st.one_of(st.integers(-2, 6), st.none(), st.just("x"), st.floats(allow_nan=True), st.booleans())
act_dics = st.one_of(st.just({}), st.fixed_dictionaries({"alpha": st.one_of(st.floats(-1, 2), st.just("a"))}),
                     st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh", "bad"])}))
layer = st.fixed_dictionaries({"n": values, "prev": values, "act": acts, "act_dic": act_dics,
                               "wb_width": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
                               "kind": st.sampled_from([None, "middle", "output", "dense"]),
                               "name": st.sampled_from([None, "a", "b"])})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=st.lists(layer, min_size=0, max_size=4), dtype=st.sampled_from(["float32", "float64", "float16"]),
       batch_size=st.one_of(st.integers(-1, 9), st.just("a")))
def test_fuzzed_stacks_run_or_fail_with_a_config_error(tmp_path_factory, layers, dtype, batch_size):
    from runner.__main__ import _typed_config
    from runner.app import run

    global BASE
    BASE = BASE or base_config()
    from omegaconf import OmegaConf

    cfg = {**BASE, "network": {"layers": layers}, "dtype": dtype, "batch_size": batch_size}
    run_dir = tmp_path_factory.mktemp("fuzz")
    try:
        plain = _typed_config(OmegaConf.create(cfg))
        run(plain, run_dir, base_dir=str(run_dir))
    except ConfigError as err:
        assert str(err) and "\n" not in str(err)
        assert json.loads((run_dir / "run.json").read_text()).get("status", "failed") == "failed" \
            if (run_dir / "run.json").exists() else True
        return
    out = np.load(run_dir / "outputs.npy")
    n_last = layers[-1]["n"]
    assert out.shape == (7, n_last) and out.dtype == np.dtype(dtype)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"


# ---------------------------------------------------------------------------------------------
# Interruption, kill -9, verify


def start_long_run(tmp_path: Path, run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", f"hydra.run.dir={run_dir}", "dataset.rows=50000000", "batch_size=2048",
         "stats.plot=false", "progress=false"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until rows are flowing into outputs
        if list(run_dir.glob(".outputs.npy.tmp")) and (run_dir / ".outputs.npy.tmp").stat().st_size > 1 << 16:
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the run did not start")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_run_leaves_an_interrupted_record_and_no_outputs(tmp_path, sig, code):
    run_dir = tmp_path / "run"
    proc = start_long_run(tmp_path, run_dir)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "interrupted" in err
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert not (run_dir / "outputs.npy").exists() and not list(run_dir.glob("*.tmp"))


def test_kill_9_leaves_running_which_verify_refuses(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_long_run(tmp_path, run_dir)
    proc.kill()
    proc.communicate(timeout=60)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    check = run_cli(str(run_dir), module="runner.verify", cwd=tmp_path)
    assert check.returncode == 1 and "'running'" in check.stdout


def test_verify_reproduces_a_run_and_detects_tampering(tmp_path, cli):
    _, run = cli("seed=2", "wb_width=0.3", "save_activations=true", "dataset.rows=500")
    check = run_cli(str(run.path), module="runner.verify", cwd=REPO)
    assert check.returncode == 0 and check.stdout.strip() == "identical", check.stdout + check.stderr
    stats = json.loads((run.path / "stats.json").read_text())
    stats["layers"][0]["mean"] += 0.25
    (run.path / "stats.json").write_text(json.dumps(stats))
    check = run_cli(str(run.path), module="runner.verify", cwd=tmp_path)
    assert check.returncode == 1
    assert "stats.json: changed after the run" in check.stdout
    not_a_run = run_cli(str(tmp_path), module="runner.verify", cwd=tmp_path)
    assert not_a_run.returncode == 2 and "not a run directory" in not_a_run.stderr


def test_verify_reports_the_largest_difference_of_an_artifact_that_does_not_reproduce(tmp_path, cli):
    from runner.verify import difference

    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.save(b, np.array([[1.0, 2.5], [3.0, 3.0]]))
    assert difference("outputs.npy", a, b) == "max abs diff 1"
    np.savez(tmp_path / "a.npz", w0=np.zeros(3), b0=np.ones(2))
    np.savez(tmp_path / "b.npz", w0=np.zeros(3), b0=np.array([1.0, 1.125]))
    assert difference("params.npz", tmp_path / "a.npz", tmp_path / "b.npz") == "max abs diff 0.125 (in b0)"


@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir"])
def test_an_output_directory_that_cannot_be_made_is_refused_before_hydra_starts(tmp_path, key):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    args = [f"{key}={blocker / 'run'}"] + (["-m", "seed=1,2"] if key == "hydra.sweep.dir" else [])
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {key}={blocker / 'run'}: cannot create the directory (Not a directory)"


def test_printing_the_config_writes_nothing(tmp_path):
    proc = run_cli("--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 0 and list(tmp_path.iterdir()) == []
