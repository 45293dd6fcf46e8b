"""Sweeps through Hydra's launchers give the same artifacts as the basic launcher; sweeps resume."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import run_cli

POINTS = ["wb_width=1,0.1", "network.layers.1.act=tanh,sigmoid", "dataset.rows=300", "stats.plot=false"]
ARTIFACTS = ("outputs.npy", "params.npz", "stats.json")


def sweep(tmp_path, name, *extra):
    folder = tmp_path / name
    proc = run_cli("-m", *POINTS, *extra, f"hydra.sweep.dir={folder}", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder


def assert_same_jobs(a, b, jobs=4):
    for job in range(jobs):
        ra, rb = json.loads((a / str(job) / "run.json").read_text()), json.loads((b / str(job) / "run.json").read_text())
        assert ra["status"] == rb["status"] == "completed"
        for name in ARTIFACTS:
            assert (a / str(job) / name).read_bytes() == (b / str(job) / name).read_bytes(), (job, name)
    assert (b / "sweep_summary.csv").read_text().count("\n") == jobs + 1


@pytest.fixture(scope="module")
def basic(tmp_path_factory):
    return sweep(tmp_path_factory.mktemp("basic"), "sweep")


def test_joblib_launcher_matches_the_basic_launcher(tmp_path, basic):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    parallel = sweep(tmp_path, "joblib", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert_same_jobs(basic, parallel)
    threads = json.loads((parallel / "0" / "run.json").read_text())["threads"]
    assert threads == max(1, (os.cpu_count() or 1) // 2)


def test_submitit_local_launcher_matches_the_basic_launcher(tmp_path, basic):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    local = sweep(tmp_path, "submitit", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5")
    assert_same_jobs(basic, local)
    assert (local / ".submitit").is_dir()


def test_slurm_example_config_composes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import yaml

    proc = run_cli("hydra/launcher=slurm_cpu", "hydra.launcher.partition=short", "--cfg", "hydra", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    launcher = yaml.safe_load(proc.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher["partition"], launcher["cpus_per_task"], launcher["mem_gb"], launcher["timeout_min"]) == \
        ("short", 4, 8, 60)


def test_a_missing_launcher_plugin_names_the_extra(monkeypatch):
    from runner import guard
    from runner.errors import ConfigError

    monkeypatch.setitem(guard.LAUNCHER_PLUGINS, "joblib", ("hydra_plugins.not_installed_xyz", "hydra-joblib-launcher",
                                                           "parallel"))
    with pytest.raises(ConfigError, match=r"hydra/launcher=joblib: needs the hydra-joblib-launcher plugin.*"
                                          r"pip install 'fwdrunner\[parallel\]'"):
        guard.check_command_line(["-m", "hydra/launcher=joblib"], cwd=__import__("pathlib").Path("."))


def test_threads_default_to_the_cores_shared_among_parallel_jobs():
    from runner.jobs import default_threads

    cores = os.cpu_count() or 1
    assert default_threads(None) is None
    assert default_threads({"n_jobs": 2}) == max(1, cores // 2)
    assert default_threads({"n_jobs": -1}) == 1
    assert default_threads({"cpus_per_task": 3}) == 3
    assert default_threads({"cpus_per_task": None}) is None


def test_a_sweep_run_again_resumes(tmp_path, basic):
    folder = tmp_path / "sweep"
    shutil.copytree(basic, folder)
    done = (folder / "0" / "run.json").read_bytes()
    record = json.loads((folder / "1" / "run.json").read_text())
    record["status"] = "interrupted"
    (folder / "1" / "run.json").write_text(json.dumps(record))
    (folder / "1" / "outputs.npy").unlink()
    proc = run_cli("-m", *POINTS, f"hydra.sweep.dir={folder}", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("already completed") == 3
    assert (folder / "0" / "run.json").read_bytes() == done
    kept = json.loads((folder / "1" / "previous" / "0" / "run.json").read_text())
    assert kept["status"] == "interrupted"
    assert json.loads((folder / "1" / "run.json").read_text())["status"] == "completed"
    assert (folder / "1" / "outputs.npy").read_bytes() == (basic / "1" / "outputs.npy").read_bytes()
    # Another config in the same folder is not taken for done: the earlier record moves aside.
    proc = run_cli("-m", *POINTS, "seed=9", f"hydra.sweep.dir={folder}", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0 and "already completed" not in proc.stdout
    assert json.loads((folder / "0" / "previous" / "0" / "run.json").read_text())["seed"] == 0
    assert json.loads((folder / "0" / "run.json").read_text())["seed"] == 9


@pytest.mark.parametrize("kernels", ["auto", "compiled"])
def test_four_shards_merge_into_the_single_run(tmp_path, cli, kernels):
    if kernels == "compiled":
        pytest.importorskip("numba")     # merge must fold the statistics as the shards did
    common = ["dataset.rows=20000", "stats.plot=false", "network.layers.1.act=tanh", "batch_size=8192",
              f"kernels={kernels}"]
    sweep_dir = tmp_path / "shards"
    proc = run_cli("-m", *common, "dataset.shards=4", "dataset.shard=range(0,4)", f"hydra.sweep.dir={sweep_dir}",
                   cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ranges = [json.loads((sweep_dir / str(i) / "run.json").read_text())["shard"] for i in range(4)]
    assert [(r["start"], r["stop"]) for r in ranges] == [(0, 8192), (8192, 16384), (16384, 20000), (20000, 20000)]
    merged = run_cli(str(sweep_dir), module="runner.merge", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    _, single = cli(*common)
    assert (sweep_dir / "merged" / "outputs.npy").read_bytes() == single.bytes("outputs.npy")
    assert json.loads((sweep_dir / "merged" / "stats.json").read_text()) == single.stats
    # A sweep with a shard missing is not a whole dataset.
    shutil.rmtree(sweep_dir / "2")
    broken = run_cli(str(sweep_dir), module="runner.merge", cwd=tmp_path)
    assert broken.returncode == 2 and "expected shards 0..3 once each; received [0, 1, 3]" in broken.stderr


def test_shard_keys_are_checked(tmp_path):
    proc = run_cli("dataset.shards=2", "dataset.shard=2", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert proc.returncode == 2 and "dataset.shard=2: expected an int from 0 to 1" in proc.stderr


def test_a_job_given_one_thread_starts_no_thread_pool(tmp_path, monkeypatch):
    # Parallel jobs get threads = cores // n_jobs; a pool of statistics or layer workers
    # beside the main thread would oversubscribe the cores the other jobs are using.
    import concurrent.futures

    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from runner.app import run
    from runner.config import register_configs

    register_configs()
    with initialize_config_module(config_module="runner.conf", version_base=None):
        cfg = OmegaConf.to_container(compose(config_name="config", overrides=["stats.plot=false"]), resolve=True)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    run({**cfg, "threads": 2}, tmp_path / "two", base_dir=str(tmp_path))
    started = []
    original = concurrent.futures.ThreadPoolExecutor.__init__

    def recording(self, *args, **kwargs):
        started.append(kwargs.get("max_workers", args[0] if args else None))
        original(self, *args, **kwargs)

    monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "__init__", recording)
    run({**cfg, "threads": 1}, tmp_path / "one", base_dir=str(tmp_path))
    assert started == []
    for name in ARTIFACTS:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
