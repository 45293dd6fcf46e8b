"""Dataset sources: every format streams the same numbers, synthetic data is reproducible by hand,
bad data gets one clear line, and memory stays at batch size."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import runner.datasets as D
from conftest import Run, gaussian_input, run_cli
from runner.datasets import BLOCK, Source, build_dataset, register_dataset
from runner.errors import ConfigError, DataError

ROWS, WIDTH = 257, 100
FORMATS = ("c.npy", "f.npy", "stored.npz", "compressed.npz", "header.csv", "plain.csv", "data.tsv", "data.txt")
RANGES = [(1, 0, None), (7, 0, None), (50, 0, None), (1000, 0, None), (16, 3, 200), (64, 250, 257),
          (5, 100, 101), (8, 40, 40)]


def relu(u):
    return np.where(u > 0, u, 0.0)


def sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def softmax(u):
    e = np.exp(u - u.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def by_hand(x, params):
    """The default network (ReLU, sigmoid, softmax) recomputed from params.npz."""
    for i, act in enumerate([relu, sigmoid, softmax]):
        x = act(x @ params[f"w{i}"] + params[f"b{i}"])
    return x


def uniform_input(rows, features, seed=0, low=0.0, high=1.0):
    """The uniform dataset, recomputed block by block: block k from default_rng([seed, 1, k])."""
    parts = [np.random.default_rng([seed, 1, k]).uniform(low, high, (min(BLOCK, rows - start), features))
             for k, start in enumerate(range(0, rows, BLOCK))]
    return np.concatenate(parts)


def write_formats(folder: Path, x: np.ndarray) -> None:
    """The same numbers in every supported layout; %.17g round-trips float64 exactly."""
    np.save(folder / "c.npy", x)
    np.save(folder / "f.npy", np.asfortranarray(x))
    np.savez(folder / "stored.npz", x=x)
    np.savez_compressed(folder / "compressed.npz", x=x)
    cols = ",".join(f"x{i}" for i in range(x.shape[1]))
    np.savetxt(folder / "header.csv", x, delimiter=",", fmt="%.17g", header=cols, comments="")
    np.savetxt(folder / "plain.csv", x, delimiter=",", fmt="%.17g")
    np.savetxt(folder / "data.tsv", x, delimiter="\t", fmt="%.17g")
    np.savetxt(folder / "data.txt", x, delimiter="   ", fmt="%.17g")


def source(path, **cfg) -> Source:
    return build_dataset({"type": "file", "path": str(path), **cfg}, features=None, base_dir=str(Path(path).parent))


def stream(src: Source, batch_size: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    batches = list(src.batches(batch_size, start, stop))
    assert all(b.ndim == 2 and 0 < len(b) <= batch_size and b.shape[1] == src.features for b in batches)
    assert all(len(b) == batch_size for b in batches[:-1])
    return np.concatenate(batches) if batches else np.empty((0, src.features))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    x = np.random.default_rng(7).standard_normal((ROWS, WIDTH)) * 10.0 ** np.arange(-3, 4, 0.07)[:WIDTH]
    write_formats(folder, x)
    return folder, x


# --- every format, every range -------------------------------------------------------------------

@pytest.mark.parametrize("name", FORMATS)
def test_every_format_streams_the_same_rows_for_every_batch_size_and_range(data_dir, name):
    folder, x = data_dir
    src = source(folder / name)
    assert (src.rows, src.features) == x.shape
    for batch_size, start, stop in RANGES:
        got = stream(src, batch_size, start, stop)
        np.testing.assert_array_equal(got, x[start:stop], err_msg=f"{name} {batch_size} [{start}, {stop})")
    described = src.describe()
    path = folder / name
    assert described["path"] == str(path) and described["size"] == path.stat().st_size
    assert described["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert described["rows"] == ROWS and described["features"] == WIDTH and described["nonfinite"] == "error"


def test_format_details_are_described(data_dir):
    folder, _ = data_dir
    assert source(folder / "f.npy").describe()["fortran_order"] is True
    assert source(folder / "stored.npz").describe()["compressed"] is False
    assert source(folder / "compressed.npz").describe()["key"] == "x"
    assert source(folder / "header.csv").describe()["header"] is True
    assert source(folder / "plain.csv").describe()["header"] is False
    assert source(folder / "data.txt").describe()["delimiter"] == "whitespace"


def test_npz_keys_and_fortran_compressed_members(tmp_path):
    x = np.arange(60.0).reshape(12, 5)
    np.savez_compressed(tmp_path / "many.npz", a=x, b=-x, f=np.asfortranarray(x * 2))
    np.savez(tmp_path / "stored_f.npz", f=np.asfortranarray(x))
    np.testing.assert_array_equal(stream(source(tmp_path / "many.npz", key="b"), 5), -x)
    fortran = source(tmp_path / "many.npz", key="f")
    np.testing.assert_array_equal(stream(fortran, 5, 3, 11), 2 * x[3:11])
    np.testing.assert_array_equal(stream(fortran, 4, 0, None), 2 * x)
    np.testing.assert_array_equal(stream(source(tmp_path / "stored_f.npz"), 5, 2, 9), x[2:9])
    # The temporary copy of a Fortran-order compressed member goes with its source.
    spool = fortran.source._spool.path
    assert spool.exists()
    del fortran
    import gc

    gc.collect()
    assert not spool.exists()
    with pytest.raises(DataError, match=r"many.npz: dataset.key: expected the name of one of its arrays 'a', 'b', 'f'"):
        source(tmp_path / "many.npz")
    with pytest.raises(DataError, match=r"many.npz: dataset.key=c: expected one of its arrays 'a', 'b', 'f'; "
                                        r"received 'c'"):
        source(tmp_path / "many.npz", key="c")


def test_other_dtypes_stream_as_stored(tmp_path):
    x = np.arange(24).reshape(6, 4)
    for dtype in ("int16", ">f8", "float32", "bool"):
        np.save(tmp_path / f"{dtype}.npy", x.astype(dtype))
        got = stream(source(tmp_path / f"{dtype}.npy"), 4, 1, 6)
        np.testing.assert_array_equal(got, x.astype(dtype)[1:6])


class CountingFile:
    """A binary file that counts the bytes read through it."""

    opened: list["CountingFile"] = []

    def __init__(self, path, mode="r", *args, **kwargs):
        self.f = open(path, mode, *args, **kwargs)
        self.read_bytes = 0
        CountingFile.opened.append(self)

    def read(self, n=-1):
        data = self.f.read(n)
        self.read_bytes += len(data)
        return data

    def readinto(self, buffer):
        n = self.f.readinto(buffer)
        self.read_bytes += n or 0
        return n

    def readline(self, *args):
        line = self.f.readline(*args)
        self.read_bytes += len(line)
        return line

    def __iter__(self):
        return self

    def __next__(self):
        line = next(self.f)
        self.read_bytes += len(line)
        return line

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_ranges_seek_instead_of_reading_what_comes_before(tmp_path, monkeypatch):
    rows, width = 20000, 8
    x = np.random.default_rng(1).standard_normal((rows, width))
    np.save(tmp_path / "c.npy", x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", fmt="%.17g")
    monkeypatch.setattr(D, "CHUNK", 4096)  # small scan blocks: many checkpoints and a short skip
    sources = {name: source(tmp_path / name) for name in ("c.npy", "f.npy", "x.csv")}
    monkeypatch.setattr(D, "open", CountingFile, raising=False)
    for name, src in sources.items():
        CountingFile.opened.clear()
        np.testing.assert_array_equal(stream(src, 32, 15000, 15100), x[15000:15100])
        (f,) = CountingFile.opened
        if name.endswith(".npy"):
            assert f.read_bytes == 100 * width * 8, name
        else:
            # At most one scan block of lines before the range, then the range's own lines.
            line = len(f"{x[15000, 0]:.17g}") * width
            assert f.read_bytes < 4096 + 2 * 100 * line, (name, f.read_bytes)


def test_text_files_line_endings_bom_blank_tail_and_scan_blocks(tmp_path, monkeypatch):
    x = np.arange(1.0, 61.0).reshape(30, 2) / 4
    body = "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in x)
    variants = {
        "lf.csv": body, "no_final_newline.csv": body.rstrip("\n"), "crlf.csv": body.replace("\n", "\r\n"),
        "blank_tail.csv": body + "\n  \n\t\n\n", "bom_header.csv": "\ufeffa,b\n" + body,
        "bom_data.csv": "\ufeff" + body, "blank_tail_no_newline.csv": body + "\n   ",
    }
    for chunk in (1 << 20, 7, 1):
        monkeypatch.setattr(D, "CHUNK", chunk)
        for name, text in variants.items():
            (tmp_path / name).write_bytes(text.encode("utf-8"))
            src = source(tmp_path / name)
            assert (src.rows, src.features) == (30, 2), (name, chunk)
            for batch_size, start, stop in ((4, 0, None), (3, 5, 29), (30, 29, 30)):
                np.testing.assert_array_equal(stream(src, batch_size, start, stop), x[start:stop], err_msg=name)


def test_header_detection_and_options(tmp_path):
    (tmp_path / "h.csv").write_text("a;b\n1;2\n3;4\n")
    assert stream(source(tmp_path / "h.csv", delimiter=";"), 5).tolist() == [[1, 2], [3, 4]]
    (tmp_path / "n.csv").write_text("1,2\n3,4\n")
    assert source(tmp_path / "n.csv").rows == 2
    assert stream(source(tmp_path / "n.csv", header=True), 5).tolist() == [[3, 4]]
    with pytest.raises(DataError, match=r"h.csv: line 1, column 1: expected a number; received 'a;b'"):
        source(tmp_path / "h.csv", header=False)
    (tmp_path / "tabs.txt").write_text("1\t2\n3\t4\n")
    assert stream(source(tmp_path / "tabs.txt", delimiter="\\t"), 5).tolist() == [[1, 2], [3, 4]]
    with pytest.raises(ConfigError, match=r"dataset.key='x': expected null for a .csv file"):
        source(tmp_path / "n.csv", key="x")
    with pytest.raises(ConfigError, match=r"dataset.header='yes': expected true, false or null"):
        source(tmp_path / "n.csv", header="yes")


# --- synthetic data ------------------------------------------------------------------------------

def synthetic(kind, **cfg):
    return build_dataset({"type": kind, **cfg}, features=None, base_dir=".")


def test_gaussian_is_the_block_stream_for_every_batch_size_and_range():
    rows, width = BLOCK + 4000, 3
    expected = gaussian_input(rows, width, seed=5)
    # Block 0 drawn whole and cut equals the runner's row-by-row assembly.
    np.testing.assert_array_equal(expected[:10], np.random.default_rng([5, 1, 0]).standard_normal((BLOCK, width))[:10])
    src = synthetic("gaussian", rows=rows, features=width, seed=5)
    for batch_size, start, stop in ((rows, 0, None), (7000, 0, None), (4096, BLOCK - 10, BLOCK + 20),
                                    (3, BLOCK + 3990, None), (100, 12345, 12346)):
        np.testing.assert_array_equal(stream(src, batch_size, start, stop), expected[start:stop])
    # The data is not the weights' stream ([seed, 0]) and changes with its own seed.
    assert not np.allclose(expected[:5], np.random.default_rng([5, 0]).standard_normal((5, width)))
    assert not np.allclose(stream(synthetic("gaussian", rows=5, features=width, seed=6), 5), expected[:5])


def test_uniform_is_the_block_stream_for_every_batch_size_and_range():
    rows, width = BLOCK + 100, 2
    expected = uniform_input(rows, width, seed=2, low=-3.0, high=5.0)
    src = synthetic("uniform", rows=rows, features=width, seed=2, low=-3.0, high=5.0)
    for batch_size, start, stop in ((rows, 0, None), (999, 0, None), (64, BLOCK - 32, BLOCK + 32)):
        np.testing.assert_array_equal(stream(src, batch_size, start, stop), expected[start:stop])


def test_synthetic_statistics():
    n = 200_000
    g = stream(synthetic("gaussian", rows=n, features=2, loc=3.0, scale=2.0, seed=1), 8192)
    # Five standard errors: the mean's is scale / sqrt(N), the std's about scale / sqrt(2N).
    assert abs(g.mean() - 3.0) < 5 * 2.0 / np.sqrt(2 * n)
    assert abs(g.std() - 2.0) < 5 * 2.0 / np.sqrt(4 * n)
    u = stream(synthetic("uniform", rows=n, features=2, low=-1.0, high=3.0, seed=1), 8192)
    assert u.min() >= -1.0 and u.max() < 3.0
    assert u.min() < -0.999 and u.max() > 2.999
    assert abs(u.mean() - 1.0) < 5 * (4 / np.sqrt(12)) / np.sqrt(2 * n)
    assert abs(u.std() - 4 / np.sqrt(12)) < 0.01


def test_synthetic_config_checks():
    with pytest.raises(ConfigError, match=r"dataset.high=1.0: expected a finite number above dataset.low=2.0"):
        synthetic("uniform", features=3, low=2.0, high=1.0)
    with pytest.raises(ConfigError, match=r"dataset.rows=0: expected a positive int"):
        synthetic("gaussian", rows=0, features=3)
    with pytest.raises(ConfigError, match=r"dataset.low: not a key of dataset type 'gaussian'; "
                                          r"accepted: rows=1000.*nonfinite"):
        synthetic("gaussian", low=1.0)
    # With no width from the network either, the default network's width.
    assert synthetic("gaussian").features == D.FALLBACK_FEATURES
    with pytest.raises(ValueError, match=r"expected 0 <= start <= stop <= 5"):
        next(synthetic("gaussian", rows=5, features=1).batches(2, 3, 9))


# --- iris ----------------------------------------------------------------------------------------

def test_iris_is_the_real_data():
    src = build_dataset({"type": "iris"}, features=None, base_dir=".")
    x = stream(src, 64)
    assert x.shape == (150, 4)
    np.testing.assert_array_equal(x[0], [5.1, 3.5, 1.4, 0.2])
    np.testing.assert_array_equal(x[-1], [5.9, 3.0, 5.1, 1.8])
    np.testing.assert_allclose(x.mean(axis=0), [5.843333, 3.057333, 3.758, 1.199333], atol=1e-6)
    assert described_type(src) == "iris"
    with pytest.raises(ConfigError,
                       match=r"network.layers\[0\].prev=100 does not match the dataset width 4 .*iris.csv"):
        build_dataset({"type": "iris"}, features=100, base_dir=".")


def described_type(src):
    return src.describe()["type"]


# --- non-finite values ---------------------------------------------------------------------------

def test_nonfinite_values_are_reported_as_they_stream_or_propagated(tmp_path):
    x = np.ones((100, 3))
    x[37, 1], x[40, 0], x[90, 2] = np.nan, np.inf, -np.inf
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header="a,b,c", comments="")
    batches = source(tmp_path / "x.npy").batches(16)
    for _ in range(2):  # rows 0..31 are finite and arrive before the error
        assert np.isfinite(next(batches)).all()
    with pytest.raises(DataError, match=r"x.npy: expected finite values \(dataset.nonfinite=error\); received 2 "
                                        r"non-finite values in rows 32..47, the first in row 37;"):
        next(batches)
    with pytest.raises(DataError, match=r"x.csv: .*received 1 non-finite value in rows 85..99, the first in row 90 "
                                        r"\(line 92\)"):
        stream(source(tmp_path / "x.csv"), 16, 85)
    got = stream(source(tmp_path / "x.csv", nonfinite="propagate"), 16)
    np.testing.assert_array_equal(got, x)
    assert source(tmp_path / "x.npy", nonfinite="propagate").describe()["nonfinite"] == "propagate"
    with pytest.raises(ConfigError, match=r"dataset.nonfinite='skip': expected one of error, propagate"):
        source(tmp_path / "x.npy", nonfinite="skip")
    huge = synthetic("gaussian", rows=10, features=2, scale=1e308)
    with pytest.raises(DataError, match=r"dataset.type=gaussian: expected finite values"):
        stream(huge, 10)


def test_plugin_sources_with_the_older_contract_still_work():
    @register_dataset("ones_for_test")
    class Ones(Source):
        def __init__(self, rows: int = 3, features: int | None = None) -> None:
            self.rows, self.features = rows, features

        def batches(self, batch_size):
            for start in range(0, self.rows, batch_size):
                yield np.ones((min(batch_size, self.rows - start), self.features))

        def describe(self):
            return {"type": "ones_for_test"}

    try:
        src = build_dataset({"type": "ones_for_test", "rows": 5}, features=2, base_dir=".")
        assert stream(src, 2).shape == (5, 2)
        assert src.describe() == {"type": "ones_for_test", "nonfinite": "error"}
    finally:
        D.DATASETS.pop("ones_for_test")


# --- the CLI, end to end -------------------------------------------------------------------------

def test_cli_outputs_over_every_format_are_identical_and_match_a_forward_pass(tmp_path):
    x = np.random.default_rng(3).uniform(-2, 2, size=(ROWS, WIDTH))
    write_formats(tmp_path, x)
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "dataset=file", f"dataset.path={','.join(FORMATS)}", "batch_size=50",
                   "stats.plot=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = [Run(sweep / str(i)) for i in range(len(FORMATS))]
    outputs = set()
    sample = [0, 1, 49, 50, 128, 200, 256]
    for run in runs:
        rec = run.record
        assert rec["status"] == "completed", rec
        name = Path(rec["dataset"]["path"]).name
        assert rec["dataset"]["path"] == str(tmp_path / name)
        assert rec["dataset"]["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        out = run.outputs
        assert out.shape == (ROWS, 10)
        np.testing.assert_allclose(out[sample], by_hand(x[sample], run.params), rtol=1e-12, atol=1e-15)
        outputs.add(run.bytes("outputs.npy"))
    assert len(outputs) == 1


def test_cli_sweeps_over_datasets_and_the_data_ignores_the_weights_seed(tmp_path):
    # seed=3 seeds the weights only: the by-hand inputs below use the data's own seed, 0.
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "dataset=gaussian,uniform,iris", "network.layers.0.prev=null", "seed=3", "batch_size=300",
                   "stats.plot=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    iris = np.loadtxt(Path(D.__file__).parent / "data" / "iris.csv", delimiter=",", skiprows=1)
    inputs = {"gaussian": gaussian_input(1000, 100), "uniform": uniform_input(1000, 100), "iris": iris}
    seen = set()
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        run = Run(job)
        rec = run.record
        assert rec["status"] == "completed", rec
        kind = rec["dataset"]["type"]
        assert rec["seed"] == 3
        seen.add(kind)
        x = inputs[kind]
        np.testing.assert_allclose(run.outputs, by_hand(x, run.params), rtol=1e-12, atol=1e-15)
    assert seen == set(inputs)


def bad_files(folder: Path) -> list[tuple[str, list[str]]]:
    """(file, words its error line must hold) for each kind of bad data file; read with batch_size=16."""
    x = np.random.default_rng(0).standard_normal((64, 100))
    (folder / "adir.npy").mkdir()
    (folder / "data.json").write_text("[]")
    (folder / "corrupt.npy").write_bytes(b"\x93NUMPY\x01\x00garbage that is no header" + bytes(100))
    np.save(folder / "whole.npy", x)
    (folder / "truncated.npy").write_bytes((folder / "whole.npy").read_bytes()[:3000])
    np.savez_compressed(folder / "whole.npz", x=x)
    (folder / "truncated.npz").write_bytes((folder / "whole.npz").read_bytes()[:2000])
    np.save(folder / "cube.npy", np.zeros((4, 5, 100)))
    np.save(folder / "objects.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    np.save(folder / "complex.npy", np.zeros((3, 100), dtype=complex))
    np.save(folder / "narrow.npy", np.zeros((3, 4)))
    np.savez(folder / "several.npz", a=x, b=x)
    np.savez(folder / "cube.npz", c=np.zeros((2, 3, 100)))
    nan = x.copy()
    nan[37, 5] = nan[40, 0] = np.nan
    np.save(folder / "nan.npy", nan)
    text = [",".join(f"{v:.17g}" for v in row) for row in x]
    bad_cell = ",".join(["abc", *text[20].split(",")[1:]])
    (folder / "text.csv").write_text("\n".join(["h" + ",h" * 99, *text[:20], bad_cell, *text[21:]]) + "\n")
    inf_row = ",".join(["1", "-inf", *text[20].split(",")[2:]])
    (folder / "inf.csv").write_text("\n".join([*text[:20], inf_row, *text[21:]]) + "\n")
    return [
        ("missing.npy", ["missing.npy", "expected an existing file", "received no such file"]),
        ("adir.npy", ["adir.npy", "expected a file", "received a directory"]),
        ("data.json", ["data.json", "expected a file ending in .npy", "received '.json'"]),
        ("corrupt.npy", ["corrupt.npy", "expected a .npy array", "received an unreadable header"]),
        ("truncated.npy", ["truncated.npy", "expected 51328 bytes", "truncated", "received a file of 3000"]),
        ("truncated.npz", ["truncated.npz", "expected a .npz (zip) archive", "received an unreadable"]),
        ("cube.npy", ["cube.npy", "expected a 2-D array", "received shape (4, 5, 100)"]),
        ("cube.npz", ["cube.npz", "array 'c'", "expected a 2-D array", "received shape (2, 3, 100)"]),
        ("objects.npy", ["objects.npy", "expected a numeric array", "received dtype object", "pickle"]),
        ("complex.npy", ["complex.npy", "expected a numeric", "received dtype complex128"]),
        ("narrow.npy", ["narrow.npy", "network.layers[0].prev=100 does not match the dataset width 4"]),
        ("several.npz", ["several.npz", "dataset.key", "expected", "'a', 'b'", "received none"]),
        ("text.csv", ["text.csv", "line 22, column 1", "expected a number", "received 'abc'"]),
        ("nan.npy", ["nan.npy", "expected finite values", "received 2 non-finite values in rows 32..47", "row 37"]),
        ("inf.csv", ["inf.csv", "expected finite values", "received 1 non-finite value in rows 16..31",
                     "row 20 (line 21)"]),
    ]


def check_failed_run(run_dir: Path, line: str) -> None:
    assert not (run_dir / "outputs.npy").exists() and not list(run_dir.glob(".outputs.npy*")), run_dir
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["status"] == "failed" and rec["error"]["message"] in line, rec["error"]


def test_bad_data_gets_one_clear_line_exit_2_and_no_outputs(tmp_path):
    files = bad_files(tmp_path)
    # Every bad file as one job of a sweep (each job reports its own line, in order), and the
    # cases that need other overrides, plus mid-stream failures, as processes of their own.
    sweep = tmp_path / "sweep"
    sweep_args = ["-m", "dataset=file", f"dataset.path={','.join(name for name, _ in files)}", "batch_size=16",
                  f"hydra.sweep.dir={sweep}"]
    single = [
        (["dataset=file", "dataset.path=nan.npy", "batch_size=16"], files[-2][1]),  # fails mid-stream
        (["dataset=file"], ["dataset.path", "expected the path", "received none"]),
        (["dataset=iris"], ["iris.csv", "network.layers[0].prev=100 does not match the dataset width 4"]),
    ]

    def call(i):
        if i == len(single):
            return run_cli(*sweep_args, "stats.plot=false", cwd=tmp_path)
        return run_cli(*single[i][0], "stats.plot=false", f"hydra.run.dir={tmp_path / f'run{i}'}", cwd=tmp_path)

    # Independent processes, run side by side to keep the test short.
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = list(pool.map(call, range(len(single) + 1)))
    for i, ((overrides, words), proc) in enumerate(zip(single, procs)):
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, (overrides, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout, overrides
        assert len(lines) == 1, (overrides, lines)
        assert all(word in lines[0] for word in words), (words, lines[0])
        check_failed_run(tmp_path / f"run{i}", lines[0])
    proc = procs[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == len(files), lines
    for job, ((name, words), line) in enumerate(zip(files, lines)):
        assert line.startswith("error: ") and all(word in line for word in words), (name, words, line)
        check_failed_run(sweep / str(job), line)


# --- memory ---------------------------------------------------------------------------------------

PEAK_RSS = """
import resource, subprocess, sys
proc = subprocess.run([sys.executable, "-m", "runner", *sys.argv[1:]], capture_output=True, text=True)
sys.stderr.write(proc.stderr)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_streaming_a_160_mb_file_keeps_memory_at_batch_size(tmp_path):
    rows, width = 200_000, 100
    path = tmp_path / "big.npy"
    with open(path, "wb") as f:  # written in pieces: the test process stays small too
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (rows, width)})
        rng = np.random.default_rng(0)
        for start in range(0, rows, 20_000):
            f.write(rng.standard_normal((20_000, width)).tobytes())
    # A fresh parent, so RUSAGE_CHILDREN sees only this run; two BLAS threads, so the number
    # measures the data path rather than the machine's core count.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, "dataset=file", f"dataset.path={path}", "batch_size=4096",
                           "stats.plot=false", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    code, peak_kib = proc.stdout.split()
    assert code == "0", proc.stderr
    peak_mb = int(peak_kib) / 1024
    # Measured about 70-100 MB. Loading the 160 MB input whole would pass 230 MB.
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"
    assert np.load(tmp_path / "run" / "outputs.npy", mmap_mode="r").shape == (rows, 10)


def test_a_long_run_on_a_terminal_shows_a_progress_bar_and_a_pipe_does_not(tmp_path):
    """tqdm draws on stderr only when it is a terminal; a pseudo-terminal stands in for one."""
    import os
    import pty
    import subprocess
    import sys

    args = [sys.executable, "-m", "runner", "dataset.rows=800000", "batch_size=8192", "stats.enabled=false"]
    try:
        master, slave = pty.openpty()
    except OSError as err:  # a machine without pseudo-terminals
        pytest.skip(f"no pseudo-terminal: {err}")
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    proc = subprocess.Popen([*args, f"hydra.run.dir={tmp_path / 'tty'}"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=300)
    os.close(master)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    assert "rows/s" in text and "800k" in text, text[-500:]
    piped = subprocess.run([*args, f"hydra.run.dir={tmp_path / 'pipe'}"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert piped.returncode == 0 and "rows/s]" not in piped.stderr and piped.stderr == ""
