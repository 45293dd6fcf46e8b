"""Input datasets: sources that yield rows in batches, looked up by the config's ``type``.

A source has ``rows`` and ``features``, yields float batches of shape ``(<= batch_size,
features)`` from ``batches(batch_size)``, and describes itself for ``run.json``. Sources never
hold the whole dataset in memory.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from layers.registry import unknown_name_message
from runner.errors import ConfigError, DataError

DATASETS: dict[str, Callable[..., "Source"]] = {}

# The data stream is seeded apart from the weights' stream: [seed, 1] vs [seed, 0].
DATA_STREAM = 1


def register_dataset(name: str) -> Callable:
    """Registers a source factory under ``name``; its keyword arguments are the config keys."""

    def add(factory: Callable) -> Callable:
        DATASETS[name] = factory
        return factory

    return add


class Source:
    rows: int
    features: int

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r}: expected a positive int", key=key)
    return value


@register_dataset("gaussian")
class Gaussian(Source):
    """``rows`` samples of ``features`` independent normal values, ``loc + scale * N(0, 1)``.

    The draws come from their own generator, seeded with ``seed``, so that the data does not
    change when the weights' seed does. Batches are consecutive slices of one stream: the data
    is the same whatever the batch size.
    """

    def __init__(
        self, rows: int = 1000, features: int | None = None, loc: float = 0.0,
        scale: float = 1.0, seed: int = 0,
    ) -> None:
        self.rows = _positive_int("dataset.rows", rows)
        if features is None:
            raise ConfigError(
                "dataset.features: expected a positive int, or network.layers[0].prev to take "
                "it from; received neither", key="dataset.features",
            )
        self.features = _positive_int("dataset.features", features)
        for key, value in (("loc", loc), ("scale", scale)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ConfigError(f"dataset.{key}={value!r}: expected a finite number", key=f"dataset.{key}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"dataset.seed={seed!r}: expected a non-negative int", key="dataset.seed")
        self.loc, self.scale, self.seed = float(loc), float(scale), seed

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([self.seed, DATA_STREAM])
        for start in range(0, self.rows, batch_size):
            x = rng.standard_normal((min(batch_size, self.rows - start), self.features))
            if self.scale != 1.0:
                x *= self.scale
            if self.loc != 0.0:
                x += self.loc
            yield x

    def describe(self) -> dict[str, Any]:
        return {"type": "gaussian", "rows": self.rows, "features": self.features,
                "loc": self.loc, "scale": self.scale, "seed": self.seed}


@register_dataset("file")
class NpyFile(Source):
    """A 2-D numeric ``.npy`` file, read batch by batch with plain reads, never whole.

    Relative paths resolve against the directory the command was started from.
    """

    def __init__(self, path: str | None = None, *, base_dir: str = ".") -> None:
        if not path:
            raise ConfigError("dataset.path: expected the path of a .npy file; received none", key="dataset.path")
        self.path = Path(base_dir, os.path.expanduser(str(path))).resolve()
        if self.path.suffix.lower() != ".npy":
            raise ConfigError(
                f"dataset.path={path}: expected a file ending in .npy; received {self.path.suffix or 'no extension'!r}",
                key="dataset.path",
            )
        if not self.path.exists():
            raise DataError(f"dataset.path={path}: no such file ({self.path})", key="dataset.path")
        if not self.path.is_file():
            raise DataError(f"dataset.path={path}: expected a file; received a directory ({self.path})", key="dataset.path")
        self.shape, self.dtype, self.fortran_order, self.offset = _read_npy_header(self.path)
        if len(self.shape) != 2:
            raise DataError(
                f"{self.path}: expected a 2-D array (rows, features); received shape {self.shape}",
                key="dataset.path",
            )
        if self.dtype.kind not in "biuf":
            raise DataError(f"{self.path}: expected a numeric array; received dtype {self.dtype}", key="dataset.path")
        self.rows, self.features = self.shape
        if self.rows < 1:
            raise DataError(f"{self.path}: expected at least one row; received shape {self.shape}", key="dataset.path")
        expected_size = self.offset + self.rows * self.features * self.dtype.itemsize
        size = self.path.stat().st_size
        if size < expected_size:
            raise DataError(
                f"{self.path}: truncated: header says shape {self.shape} of {self.dtype} "
                f"({expected_size} bytes), the file has {size}", key="dataset.path",
            )

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        if self.fortran_order:
            # Column-major files store each feature contiguously; a row batch is a strided read.
            data = np.load(self.path, mmap_mode="r", allow_pickle=False)
            for start in range(0, self.rows, batch_size):
                yield np.ascontiguousarray(data[start:start + batch_size])
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            for start in range(0, self.rows, batch_size):
                rows = min(batch_size, self.rows - start)
                batch = np.empty((rows, self.features), dtype=self.dtype)
                if f.readinto(memoryview(batch).cast("B")) != batch.nbytes:
                    raise DataError(f"{self.path}: file ended early at row {start}", key="dataset.path")
                yield batch

    def describe(self) -> dict[str, Any]:
        return {"type": "file", "path": str(self.path), "rows": self.rows, "features": self.features,
                "file_dtype": str(self.dtype), "size": self.path.stat().st_size,
                "sha256": sha256_file(self.path)}


def _read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            return shape, dtype, fortran_order, f.tell()
    except (ValueError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: not a readable .npy file ({err})", key="dataset.path") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The file's SHA-256, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def build_dataset(cfg: Mapping[str, Any], *, features: int | None, base_dir: str) -> Source:
    """Builds the source that ``cfg["type"]`` names, checking its keys against the factory's.

    Args:
        cfg: the ``dataset`` config node as a plain dict.
        features: the width the network expects (``network.layers[0].prev``), when it is set;
            a source that does not know its width takes it from here.
        base_dir: where relative paths resolve: the directory the command was started from.
    """
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in DATASETS:
        raise ConfigError(f"dataset.type: {unknown_name_message('dataset type', kind, DATASETS)}", key="dataset.type")
    factory = DATASETS[kind]
    accepted = inspect.signature(factory).parameters
    for key in cfg:
        if key not in accepted or key == "base_dir":
            allowed = ", ".join(f"{p.name}={p.default!r}" for p in accepted.values() if p.name != "base_dir")
            raise ConfigError(f"dataset.{key}: not a key of dataset type {kind!r}; accepted: {allowed}", key=f"dataset.{key}")
    if "features" in accepted and cfg.get("features") is None:
        cfg["features"] = features
    if "base_dir" in accepted:
        cfg["base_dir"] = base_dir
    return factory(**cfg)
