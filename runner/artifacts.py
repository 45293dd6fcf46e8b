"""Writing run artifacts: whole or not at all.

Every artifact is written under a temporary name in the run directory and renamed into place
once complete, so a reader never sees a half-written file under an artifact's name.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np



def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


@contextmanager
def atomic(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary name beside ``path``; renames it to ``path`` when the block succeeds.

    If the block fails, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` atomically."""
    with atomic(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Writes ``data`` as indented JSON, atomically."""
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Writes an uncompressed ``.npz`` atomically."""
    with atomic(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


class NpyWriter:
    """Streams a 2-D array of known shape into a ``.npy`` file, batch by batch.

    The header is written first for the final shape; rows are appended with sequential writes;
    ``close()`` checks that every row arrived and renames the file into place. A writer that is
    not closed (an error, an interrupt) leaves only its temporary file, which ``discard()``
    removes.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int], dtype: np.dtype | str) -> None:
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.rows_written = 0
        self._tmp = _tmp_name(self.path)
        self._file = open(self._tmp, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self._file, header) if _needs_v2(header) else \
            np.lib.format.write_array_header_1_0(self._file, header)

    def write(self, batch: np.ndarray) -> None:
        if batch.ndim != 2 or batch.shape[1] != self.shape[1] or batch.dtype != self.dtype:
            raise ValueError(f"{self.path.name}: batch {batch.shape} {batch.dtype} does not fit {self.shape} {self.dtype}")
        if self.rows_written + batch.shape[0] > self.shape[0]:
            raise ValueError(f"{self.path.name}: more than the declared {self.shape[0]} rows")
        self._file.write(memoryview(np.ascontiguousarray(batch)).cast("B"))
        self.rows_written += batch.shape[0]

    def close(self) -> Path:
        self._file.close()
        if self.rows_written != self.shape[0]:
            self.discard()
            raise ValueError(f"{self.path.name}: {self.rows_written} of {self.shape[0]} rows were written")
        os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def _needs_v2(header: dict) -> bool:
    # Version 1.0 headers are limited to 65535 bytes; only absurd shapes need 2.0.
    return len(repr(header)) > 65000


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The file's SHA-256, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(run_dir: str | os.PathLike, names: list[str]) -> dict[str, str]:
    """``{name: sha256}`` for the named artifacts that exist in ``run_dir``."""
    run_dir = Path(run_dir)
    return {name: sha256_file(run_dir / name) for name in names if (run_dir / name).is_file()}
