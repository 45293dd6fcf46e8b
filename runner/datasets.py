"""Input datasets: sources that yield rows in batches, looked up by the config's ``type``.

A source has ``rows`` and ``features``; ``batches(batch_size, start=0, stop=None)`` yields the
consecutive rows ``[start, stop)`` as blocks of shape ``(<= batch_size, features)`` in any
numeric dtype (the runner casts them), and ``describe()`` is recorded in ``run.json``. Sources
never hold the whole dataset in memory: what they keep depends on the batch size and the width
only, so a data-parallel shard can stream its own row range of any file.

Shipped types (the ``dataset/`` config group):

* ``gaussian`` and ``uniform``: synthetic data, generated in blocks of :data:`BLOCK` rows, block
  ``k`` from ``np.random.default_rng([seed, 1, k])`` (the weights use ``[seed, 0]``). The data
  does not depend on the batch size, and a shard starts at any row at the cost of one block.
* ``file``: ``.npy``, ``.npz`` (one array, stored or compressed), ``.csv``, ``.tsv``, ``.txt``.
* ``iris``: Fisher's Iris measurements, 150 × 4, shipped with the package.

Every type also takes ``nonfinite`` (``error`` or ``propagate``), applied by
:func:`build_dataset` as the batches stream, and :func:`build_dataset` checks the data's width
against ``network.layers[0].prev`` with a message that names the file.

Limits: a compressed ``.npz`` member can only be decompressed forward (a range reads and drops
what comes before it); a stored member is read in place, and its CRC is not checked.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import inspect
import itertools
import os
import struct
import tempfile
import weakref
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping

import numpy as np

from layers.registry import registry_table, unknown_name_message
from runner.artifacts import sha256_file
from runner.errors import ConfigError, DataError

DATASETS: dict[str, Callable[..., "Source"]] = registry_table({})

# The data stream is seeded apart from the weights' stream: [seed, 1, block] vs [seed, 0].
DATA_STREAM = 1
# Rows per generator block of the synthetic sources. Part of the data's definition: changing it
# changes every dataset after the first block.
BLOCK = 65536
# Read size for hashing, line counting and skipping through compressed members.
CHUNK = 1 << 20
# The synthetic sources' width when neither dataset.features nor network.layers[0].prev sets one.
FALLBACK_FEATURES = 100
NONFINITE_POLICIES = ("error", "propagate")
TEXT_DELIMITERS: dict[str, str | None] = {".csv": ",", ".tsv": "\t", ".txt": None}  # None: whitespace
FILE_SUFFIXES = (".npy", ".npz", *TEXT_DELIMITERS)
_WHITESPACE = b" \t\r\n\f\v"
_ZIP_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # the 30 fixed bytes before a member's name


def register_dataset(name: str) -> Callable:
    """Registers a source factory under ``name``; its keyword arguments are the config keys.

    A factory may also take ``features`` (the width the network expects, when it is set) and
    ``base_dir`` (where relative paths resolve); :func:`build_dataset` fills them in.
    """

    def add(factory: Callable) -> Callable:
        DATASETS[name] = factory
        return factory

    return add


class Source:
    """The contract between a dataset and the runner.

    Attributes:
        rows: number of rows, known before streaming (the output file's header needs it).
        features: number of columns.
        label: how messages name the data: a file path, or the dataset type.
    """

    rows: int
    features: int
    label: str = "dataset"

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Yields rows ``[start, stop)`` (``stop=None``: to the end) in blocks of ``<= batch_size``."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for ``run.json["dataset"]``."""
        raise NotImplementedError

    def locate(self, row: int) -> str:
        """Where ``row`` is in the input, for messages (e.g. ``"line 12"``); empty when rows are lines of nothing."""
        return ""


def row_range(source: Source, batch_size: int, start: int, stop: int | None) -> range:
    """The ``range`` of batch starts for ``batches(batch_size, start, stop)``, checked.

    Raises ValueError: these are arguments from code, not from a user's config.
    """
    stop = source.rows if stop is None else stop
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected a positive int")
    if not 0 <= start <= stop <= source.rows:
        raise ValueError(f"rows [{start}, {stop}): expected 0 <= start <= stop <= {source.rows}")
    return range(int(start), int(stop), int(batch_size))


def _span(lo: int, batch_size: int, stop: int | None, rows: int) -> int:
    return min(lo + batch_size, rows if stop is None else stop)


# --- config values -----------------------------------------------------------------------------

def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r}: expected a positive int", key=key)
    return value


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"dataset.seed={value!r}: expected a non-negative int", key="dataset.seed")
    return value


def _finite(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ConfigError(f"{key}={value!r}: expected a finite number", key=key)
    return float(value)


def _width(features: Any) -> int:
    # Without a width from either place (``network.layers.0.prev=null``, as when a sweep mixes
    # synthetic data with files of their own width), the default network's width is used.
    return FALLBACK_FEATURES if features is None else _positive_int("dataset.features", features)


# --- synthetic sources -------------------------------------------------------------------------

class Synthetic(Source):
    """Rows drawn block by block: block ``k`` (rows ``[k * BLOCK, (k + 1) * BLOCK)``) comes from
    ``np.random.default_rng([seed, 1, k])``, drawn row-major.

    A generator's draws are one sequence however they are chunked, so a batch is assembled from
    the slices of the blocks it covers and the data is the same for every batch size. Starting
    at row ``r`` costs drawing the ``r % BLOCK`` rows before it in its block, never the blocks
    before.
    """

    kind = "synthetic"

    def __init__(self, rows: int, features: int | None, seed: int) -> None:
        self.rows = _positive_int("dataset.rows", rows)
        self.features = _width(features)
        self.seed = _seed(seed)
        self.label = f"dataset.type={self.kind}"

    def _draw(self, rng: np.random.Generator, out: np.ndarray) -> None:
        """Fills ``out`` (C-contiguous float64) with the next standard draws of ``rng``."""
        raise NotImplementedError

    def _transform(self, batch: np.ndarray) -> None:
        """Maps standard draws to the configured distribution, in place."""

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        rng: np.random.Generator | None = None
        block, drawn = -1, 0  # the block rng belongs to, and how many of its rows it has drawn
        for lo in row_range(self, batch_size, start, stop):
            hi = _span(lo, batch_size, stop, self.rows)
            out = np.empty((hi - lo, self.features))
            row = lo
            while row < hi:
                k, offset = divmod(row, BLOCK)
                if k != block:
                    rng, block, drawn = np.random.default_rng([self.seed, DATA_STREAM, k]), k, 0
                if drawn < offset:  # only for the first batch of a range that starts mid-block
                    self._skip(rng, offset - drawn, batch_size)
                    drawn = offset
                take = min(hi - row, BLOCK - offset)
                self._draw(rng, out[row - lo:row - lo + take])
                drawn += take
                row += take
            self._transform(out)
            yield out

    def _skip(self, rng: np.random.Generator, rows: int, batch_size: int) -> None:
        # Drawn and discarded through a bounded buffer: memory stays at batch size.
        scratch = np.empty((min(rows, max(batch_size, 1024)), self.features))
        while rows > 0:
            n = min(rows, len(scratch))
            self._draw(rng, scratch[:n])
            rows -= n


@register_dataset("gaussian")
class Gaussian(Synthetic):
    """``rows`` samples of ``features`` independent normal values, ``loc + scale * N(0, 1)``.

    The draws come from their own generators (see :class:`Synthetic`), so the data does not
    change when the weights' seed or the batch size does.
    """

    kind = "gaussian"

    def __init__(
        self, rows: int = 1000, features: int | None = None, loc: float = 0.0,
        scale: float = 1.0, seed: int = 0,
    ) -> None:
        super().__init__(rows, features, seed)
        self.loc = _finite("dataset.loc", loc)
        self.scale = _finite("dataset.scale", scale)

    def _draw(self, rng: np.random.Generator, out: np.ndarray) -> None:
        rng.standard_normal(out=out)

    def _transform(self, batch: np.ndarray) -> None:
        # Skipped at the defaults, so the stream is exactly the generator's standard normals.
        # Overflow (a huge scale) is left to the nonfinite policy, without a NumPy warning.
        with np.errstate(over="ignore", invalid="ignore"):
            if self.scale != 1.0:
                batch *= self.scale
            if self.loc != 0.0:
                batch += self.loc

    def describe(self) -> dict[str, Any]:
        return {"type": "gaussian", "rows": self.rows, "features": self.features,
                "loc": self.loc, "scale": self.scale, "seed": self.seed, "block": BLOCK}


@register_dataset("uniform")
class Uniform(Synthetic):
    """``rows`` samples of ``features`` independent values, uniform on ``[low, high)``.

    Each value is ``low + (high - low) * U`` with ``U = rng.random()``, exactly what
    ``rng.uniform(low, high)`` computes; generators as in :class:`Synthetic`.
    """

    kind = "uniform"

    def __init__(
        self, rows: int = 1000, features: int | None = None, low: float = 0.0,
        high: float = 1.0, seed: int = 0,
    ) -> None:
        super().__init__(rows, features, seed)
        self.low = _finite("dataset.low", low)
        self.high = _finite("dataset.high", high)
        if not (self.low < self.high and np.isfinite(self.high - self.low)):
            raise ConfigError(
                f"dataset.high={high!r}: expected a finite number above dataset.low={low!r}", key="dataset.high")

    def _draw(self, rng: np.random.Generator, out: np.ndarray) -> None:
        rng.random(out=out)

    def _transform(self, batch: np.ndarray) -> None:
        batch *= self.high - self.low
        batch += self.low

    def describe(self) -> dict[str, Any]:
        return {"type": "uniform", "rows": self.rows, "features": self.features,
                "low": self.low, "high": self.high, "seed": self.seed, "block": BLOCK}


# --- files: shared helpers ---------------------------------------------------------------------

class FileSource(Source):
    """A source read from one file; describes it by absolute path, size and SHA-256."""

    path: Path
    kind = "file"
    format = ""

    def describe(self) -> dict[str, Any]:
        if getattr(self, "_sha256", None) is None:
            # Cached: describe() is called more than once per run, and hashing reads the file.
            self._sha256 = sha256_file(self.path)
        return {"type": self.kind, "format": self.format, "path": str(self.path), "rows": self.rows,
                "features": self.features, **self._details(), "size": self.path.stat().st_size,
                "sha256": self._sha256}

    def _details(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class ArrayHeader:
    """What a ``.npy`` header says, and where the array's bytes start."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _read_npy_header(f: BinaryIO, what: str, base: int = 0) -> ArrayHeader:
    """Parses a ``.npy`` header at the current position of ``f`` (``base``: that position).

    Uses NumPy's header parser, which evaluates literals only: nothing is unpickled here.
    """
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
        return ArrayHeader(tuple(shape), dtype, bool(fortran_order), base + f.tell())
    except (ValueError, OSError, SyntaxError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{what}: expected a .npy array; received an unreadable header ({err})",
                        key="dataset.path") from None


def _check_array(header: ArrayHeader, what: str) -> None:
    """Refuses anything but a non-empty 2-D array of bools, ints or floats."""
    if header.dtype.hasobject:
        raise DataError(f"{what}: expected a numeric array; received dtype object, which needs pickle "
                        "(loading runs with allow_pickle=False)", key="dataset.path")
    if len(header.shape) != 2:
        raise DataError(f"{what}: expected a 2-D array (rows, features); received shape {header.shape}",
                        key="dataset.path")
    if header.dtype.kind not in "biuf" or header.dtype.fields is not None:
        raise DataError(f"{what}: expected a numeric (bool, int or float) array; received dtype {header.dtype}",
                        key="dataset.path")
    rows, features = header.shape
    if rows < 1 or features < 1:
        raise DataError(f"{what}: expected at least one row and one column; received shape {header.shape}",
                        key="dataset.path")


def _read_full(f: BinaryIO, out: np.ndarray) -> int:
    """Reads ``out.nbytes`` bytes into ``out`` (contiguous); returns how many arrived."""
    view = memoryview(out).cast("B")
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


# --- .npy files and stored .npz members --------------------------------------------------------

class NpyFile(FileSource):
    """A 2-D numeric array stored raw at a known offset of a file, read with seeks and plain reads.

    This is a ``.npy`` file, or an uncompressed member of a ``.npz`` (its bytes sit unchanged in
    the archive). C-order rows are one contiguous read per batch; a Fortran-order array stores
    each column contiguously, so a batch is one read per column at the rows' offset.
    """

    format = "npy"

    def __init__(self, path: Path, header: ArrayHeader, *, label: str | None = None,
                 details: dict[str, Any] | None = None, fmt: str = "npy") -> None:
        self.path, self.header, self.format = path, header, fmt
        self.label = label or str(path)
        self.rows, self.features = header.shape
        self._extra = details or {}

    @classmethod
    def open(cls, path: Path) -> "NpyFile":
        with open(path, "rb") as f:
            header = _read_npy_header(f, str(path))
        _check_array(header, str(path))
        size = path.stat().st_size
        if size < header.offset + header.nbytes:
            raise DataError(
                f"{path}: expected {header.offset + header.nbytes} bytes for shape {header.shape} of "
                f"{header.dtype} (truncated?); received a file of {size}", key="dataset.path")
        return cls(path, header)

    def _details(self) -> dict[str, Any]:
        return {**self._extra, "file_dtype": str(self.header.dtype), "fortran_order": self.header.fortran_order}

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        starts = row_range(self, batch_size, start, stop)
        itemsize, offset = self.header.dtype.itemsize, self.header.offset
        with open(self.path, "rb") as f:
            f.seek(offset + start * self.features * itemsize)
            for lo in starts:
                hi = _span(lo, batch_size, stop, self.rows)
                if self.header.fortran_order:
                    cols = np.empty((self.features, hi - lo), dtype=self.header.dtype)
                    for j in range(self.features):
                        f.seek(offset + (j * self.rows + lo) * itemsize)
                        self._fill(f, cols[j], lo)
                    # C-contiguous like every other source, so results never depend on the layout.
                    yield np.ascontiguousarray(cols.T)
                else:
                    batch = np.empty((hi - lo, self.features), dtype=self.header.dtype)
                    self._fill(f, batch, lo)
                    yield batch

    def _fill(self, f: BinaryIO, out: np.ndarray, row: int) -> None:
        if _read_full(f, out) != out.nbytes:
            raise DataError(f"{self.label}: expected {self.rows} rows; received a file that ends "
                            f"at row {row} (it changed while being read?)", key="dataset.path")


# --- .npz archives -----------------------------------------------------------------------------

def _open_npz_member(path: Path, key: Any) -> FileSource:
    """The source for one array of a ``.npz``: the one there is, or the one ``key`` names."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {info.filename.removesuffix(".npy"): info for info in zf.infolist() if not info.is_dir()}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise DataError(f"{path}: expected a .npz (zip) archive; received an unreadable file ({err})",
                        key="dataset.path") from None
    names = ", ".join(repr(k) for k in infos) or "none"
    if key is None:
        if len(infos) != 1:
            raise DataError(f"{path}: dataset.key: expected the name of one of its arrays {names}; "
                            "received none", key="dataset.key")
        (key,) = infos
    key = str(key)
    if key not in infos:
        raise DataError(f"{path}: dataset.key={key}: expected one of its arrays {names}; received {key!r}",
                        key="dataset.key")
    info = infos[key]
    label = f"{path} (array {key!r})"
    if info.flag_bits & 0x1:
        raise DataError(f"{label}: expected an unencrypted member; received an encrypted one", key="dataset.path")
    if info.compress_type == zipfile.ZIP_STORED:
        return _stored_member(path, info, key, label)
    return CompressedNpzMember(path, info, key, label)


def _stored_member(path: Path, info: zipfile.ZipInfo, key: str, label: str) -> NpyFile:
    """An uncompressed member: its ``.npy`` bytes are in the archive as they are; find them."""
    try:
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            fields = _ZIP_LOCAL_HEADER.unpack(f.read(_ZIP_LOCAL_HEADER.size))
            if fields[0] != b"PK\x03\x04":
                raise ValueError("bad local header signature")
            data_start = info.header_offset + _ZIP_LOCAL_HEADER.size + fields[-2] + fields[-1]
            f.seek(data_start)
            header = _read_npy_header(f, label, base=0)
    except (struct.error, ValueError, OSError) as err:
        raise DataError(f"{label}: expected a zip member; received an unreadable one ({err})",
                        key="dataset.path") from None
    _check_array(header, label)
    need = header.offset - data_start + header.nbytes
    if info.file_size < need or path.stat().st_size < data_start + info.file_size:
        raise DataError(f"{label}: expected {need} bytes for shape {header.shape} of {header.dtype} "
                        f"(truncated?); received a member of {info.file_size}", key="dataset.path")
    return NpyFile(path, header, label=label, details={"key": key, "compressed": False}, fmt="npz")


class CompressedNpzMember(FileSource):
    """A compressed ``.npz`` member, decompressed as it streams.

    Decompression only runs forward: each ``batches()`` call opens the member and reads forward
    to ``start`` (a range further back starts from a fresh open). A Fortran-order member stores
    columns one after the other, so no row batch is near the stream's start; it is decompressed
    once into a temporary file (removed with the source) and read from there with seeks.
    """

    format = "npz"

    def __init__(self, path: Path, info: zipfile.ZipInfo, key: str, label: str) -> None:
        self.path, self.info, self.key, self.label = path, info, key, label
        with self._open() as f:
            header = _read_npy_header(f, label)
        _check_array(header, label)
        if info.file_size < header.offset + header.nbytes:
            raise DataError(f"{label}: expected {header.offset + header.nbytes} bytes for shape {header.shape} "
                            f"of {header.dtype} (truncated?); received a member of {info.file_size}",
                            key="dataset.path")
        self.header = header
        self.rows, self.features = header.shape
        self._spool: NpyFile | None = None

    def _details(self) -> dict[str, Any]:
        return {"key": self.key, "compressed": True, "file_dtype": str(self.header.dtype),
                "fortran_order": self.header.fortran_order}

    @contextlib.contextmanager
    def _open(self) -> Iterator[BinaryIO]:
        """The member, open for reading; failures to open it become a DataError."""
        zf = None
        try:
            zf = zipfile.ZipFile(self.path)
            f = zf.open(self.info.filename)
        except (zipfile.BadZipFile, OSError, NotImplementedError, EOFError, zlib.error) as err:
            if zf is not None:
                zf.close()
            raise DataError(f"{self.label}: expected a readable member; received ({err})",
                            key="dataset.path") from None
        try:
            yield f
        finally:
            f.close()
            zf.close()

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        starts = row_range(self, batch_size, start, stop)
        if self.header.fortran_order:
            yield from self._spooled().batches(batch_size, start, stop)
            return
        row_bytes = self.features * self.header.dtype.itemsize
        with self._open() as f:
            try:
                self._skip(f, self.header.offset + start * row_bytes)
                for lo in starts:
                    hi = _span(lo, batch_size, stop, self.rows)
                    batch = np.empty((hi - lo, self.features), dtype=self.header.dtype)
                    if _read_full(f, batch) != batch.nbytes:
                        raise DataError(f"{self.label}: expected {self.rows} rows; received a member "
                                        f"that ends at row {lo}", key="dataset.path")
                    if hi == self.rows:
                        f.read(1)  # reaching the member's end makes zipfile check its CRC
                    yield batch
            except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
                raise DataError(f"{self.label}: expected a readable compressed member; received "
                                f"corrupt data ({err})", key="dataset.path") from None

    @staticmethod
    def _skip(f: BinaryIO, n: int) -> None:
        while n > 0:
            got = len(f.read(min(n, CHUNK)))
            if not got:
                break
            n -= got

    def _spooled(self) -> NpyFile:
        if self._spool is None:
            fd, name = tempfile.mkstemp(prefix="fwdrunner-", suffix=".npyraw")
            weakref.finalize(self, _unlink, name)
            with os.fdopen(fd, "wb") as out, self._open() as f:
                try:
                    self._skip(f, self.header.offset)
                    left = self.header.nbytes
                    while left > 0 and (block := f.read(min(left, CHUNK))):
                        out.write(block)
                        left -= len(block)
                    f.read(1)  # the CRC check
                except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
                    raise DataError(f"{self.label}: expected a readable compressed member; received "
                                    f"corrupt data ({err})", key="dataset.path") from None
            header = ArrayHeader(self.header.shape, self.header.dtype, True, 0)
            self._spool = NpyFile(Path(name), header, label=self.label)
        return self._spool


def _unlink(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass


# --- text files --------------------------------------------------------------------------------

def _split(line: str, delimiter: str | None) -> list[str]:
    return line.split() if delimiter is None else line.split(delimiter)


def _is_number(cell: str) -> bool:
    text = cell.strip()
    # float() accepts "1_000"; NumPy's parser does not, and this check must agree with it.
    if not text or "_" in text:
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


class TextFile(FileSource):
    """Delimited numbers, one row a line, parsed in chunks of lines and never loaded whole.

    Opening makes one binary pass over the file that counts lines (``b"\\n"`` in 1 MiB
    blocks), hashes it, and keeps the offset of one line start per block, so that a range
    starting at any row seeks to the nearest such line and skips at most a block's lines.

    Rules: the delimiter is one character, or whitespace (``None``); a UTF-8 byte-order mark is
    ignored; blank lines may only trail the data; ``header=None`` treats a first line with a
    cell that is not a number as a header.
    """

    def __init__(self, path: Path, *, delimiter: str | None, header: bool | None,
                 label: str | None = None, kind: str = "file") -> None:
        self.path, self.delimiter, self.kind = path, delimiter, kind
        self.format = path.suffix.lower().lstrip(".")
        self.label = label or str(path)
        self._scan()
        if self._size == 0:
            raise DataError(f"{self.label}: expected a header or rows of numbers; received an empty file",
                            key="dataset.path")
        first = self._line_text(0)
        if not first.strip():
            raise DataError(f"{self.label}: line 1: expected a header or a row of numbers; received a blank line",
                            key="dataset.path")
        self.header = (not all(_is_number(c) for c in _split(first, delimiter))) if header is None else header
        self.first_row_line = 1 if self.header else 0  # 0-based line index of row 0
        rows = self._used_lines - self.first_row_line
        if rows < 1:
            raise DataError(f"{self.label}: expected at least one row of numbers; received "
                            f"{'only a header' if self.header else 'no rows'}", key="dataset.path")
        self.rows = rows
        cells = _split(self._line_text(self.first_row_line), delimiter)
        self.features = len(cells)
        # Checks the first row now, so a header=false file with a header fails before the run starts.
        self._parse([self._line_bytes(self.first_row_line)], 0)

    # The scan: lines, checkpoints, hash.
    def _scan(self) -> None:
        digest = hashlib.sha256()
        newlines = 0
        self._ck_lines, self._ck_offsets = [0], [0]
        with open(self.path, "rb") as f:
            head = f.read(3)
            self._bom = 3 if head == b"\xef\xbb\xbf" else 0
            f.seek(0)
            pos = 0
            while block := f.read(CHUNK):
                digest.update(block)
                i = block.find(b"\n")
                if i >= 0:
                    self._ck_lines.append(newlines + 1)
                    self._ck_offsets.append(pos + i + 1)
                newlines += block.count(b"\n")
                pos += len(block)
            self._size = size = pos
            # Lines after the last one with data are blank: find that line from the end.
            tail_newlines, end = 0, size
            while end > 0:
                begin = max(0, end - CHUNK)
                f.seek(begin)
                block = f.read(end - begin)
                stripped = block.rstrip(_WHITESPACE)
                if stripped:
                    tail_newlines += block.count(b"\n", len(stripped))
                    break
                tail_newlines += block.count(b"\n")
                end = begin
        self._sha256 = digest.hexdigest()
        # The line holding the last non-blank byte ends at the first newline after it (or at EOF).
        self._used_lines = newlines - tail_newlines + 1 if end > 0 else 0

    def _seek_line(self, f: BinaryIO, line: int) -> None:
        k = bisect.bisect_right(self._ck_lines, line) - 1
        f.seek(self._ck_offsets[k])
        for _ in range(line - self._ck_lines[k]):
            f.readline()
        if line == 0 and self._bom:
            f.seek(self._bom)

    def _line_bytes(self, line: int) -> bytes:
        with open(self.path, "rb") as f:
            self._seek_line(f, line)
            return f.readline()

    def _line_text(self, line: int) -> str:
        return self._line_bytes(line).decode("utf-8", errors="replace").rstrip("\r\n")

    def _details(self) -> dict[str, Any]:
        return {"delimiter": "whitespace" if self.delimiter is None else self.delimiter, "header": self.header}

    def locate(self, row: int) -> str:
        return f"line {self.first_row_line + row + 1}"

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        starts = row_range(self, batch_size, start, stop)
        with open(self.path, "rb") as f:
            self._seek_line(f, self.first_row_line + start)
            for lo in starts:
                hi = _span(lo, batch_size, stop, self.rows)
                lines = list(itertools.islice(f, hi - lo))
                if len(lines) != hi - lo:
                    raise DataError(f"{self.label}: expected {self.rows} rows; received a file that ends at "
                                    f"{self.locate(lo + len(lines))} (it changed while being read?)",
                                    key="dataset.path")
                yield self._parse(lines, lo)

    def _parse(self, lines: list[bytes], row: int) -> np.ndarray:
        """Parses lines (rows from ``row``) with NumPy's C parser; on failure, finds the bad cell."""
        try:
            batch = np.loadtxt(lines, delimiter=self.delimiter, comments=None, dtype=np.float64,
                               ndmin=2, encoding="utf-8")
        except ValueError as err:
            self._explain(lines, row)
            raise DataError(f"{self.label}: {self.locate(row)}..{self.locate(row + len(lines) - 1)}: "
                            f"expected numbers; received text NumPy could not parse ({err})",
                            key="dataset.path") from None
        if batch.shape != (len(lines), self.features):
            self._explain(lines, row)
        return batch

    def _explain(self, lines: list[bytes], row: int) -> None:
        """Raises the DataError for the first line of ``lines`` that is not a full row of numbers."""
        for i, raw in enumerate(lines):
            where = f"{self.label}: {self.locate(row + i)}"
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not text.strip():
                raise DataError(f"{where}: expected {self.features} numbers; received a blank line",
                                key="dataset.path")
            cells = _split(text, self.delimiter)
            for j, cell in enumerate(cells):
                if not _is_number(cell):
                    raise DataError(f"{where}, column {j + 1}: expected a number; received {cell.strip()!r}",
                                    key="dataset.path")
            if len(cells) != self.features:
                raise DataError(f"{where}: expected {self.features} values (as on {self.locate(0)}); "
                                f"received {len(cells)}", key="dataset.path")
        raise DataError(f"{self.label}: {self.locate(row)}..{self.locate(row + len(lines) - 1)}: expected "
                        f"{len(lines)} rows of {self.features} numbers; received a different shape",
                        key="dataset.path")


# --- the file type, and iris -------------------------------------------------------------------

def _delimiter(value: Any, suffix: str) -> str | None:
    if value is None:
        return TEXT_DELIMITERS[suffix]
    # "\t" typed on a command line arrives as backslash-t.
    value = {"\\t": "\t", "tab": "\t", "whitespace": None}.get(value, value) if isinstance(value, str) else value
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 1 or value in "\r\n\"" or value.isdigit() or value in ".-+eE":
        raise ConfigError(f"dataset.delimiter={value!r}: expected one character such as ',', ';' or '\\t', "
                          "or 'whitespace'", key="dataset.delimiter")
    return value


@register_dataset("file")
def file_source(path: str | None = None, key: str | None = None, delimiter: str | None = None,
                header: bool | None = None, *, base_dir: str = ".") -> FileSource:
    """A data file; its format comes from the extension.

    Args:
        path: the file; relative paths resolve against ``base_dir``.
        key: for ``.npz``, the array to read (optional when the archive holds one).
        delimiter: for text files; default ``,`` (.csv), tab (.tsv), whitespace (.txt).
        header: for text files; ``None`` detects a non-numeric first line, ``True``/``False`` force it.
        base_dir: the directory the command was started from.
    """
    if path is None or str(path) in ("", "???"):  # "???": OmegaConf's missing value, left unset
        raise ConfigError(f"dataset.path: expected the path of a {', '.join(FILE_SUFFIXES)} file "
                          "(dataset.path=...); received none", key="dataset.path")
    resolved = Path(base_dir, os.path.expanduser(str(path))).resolve()
    suffix = resolved.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise ConfigError(f"dataset.path={path}: expected a file ending in {', '.join(FILE_SUFFIXES)}; "
                          f"received {suffix or 'no extension'!r}", key="dataset.path")
    if not resolved.exists():
        raise DataError(f"dataset.path={path}: expected an existing file; received no such file ({resolved})",
                        key="dataset.path")
    if not resolved.is_file():
        raise DataError(f"dataset.path={path}: expected a file; received a directory ({resolved})",
                        key="dataset.path")
    text = suffix in TEXT_DELIMITERS
    for name, value, applies in (("key", key, suffix == ".npz"), ("delimiter", delimiter, text),
                                 ("header", header, text)):
        if value is not None and not applies:
            raise ConfigError(f"dataset.{name}={value!r}: expected null for a {suffix} file; the key is for "
                              f"{'.npz' if name == 'key' else '.csv, .tsv and .txt'} files", key=f"dataset.{name}")
    if header is not None and not isinstance(header, bool):
        raise ConfigError(f"dataset.header={header!r}: expected true, false or null (detect)", key="dataset.header")
    if suffix == ".npy":
        return NpyFile.open(resolved)
    if suffix == ".npz":
        return _open_npz_member(resolved, key)
    return TextFile(resolved, delimiter=_delimiter(delimiter, suffix), header=header)


@register_dataset("iris")
def iris() -> FileSource:
    """Fisher's Iris data (1936): 150 flowers × 4 measurements in cm (sepal length, sepal width,
    petal length, petal width), as scikit-learn ships it (``sklearn/datasets/data/iris.csv``).

    The species column is left out: the runner needs inputs only. Shipped as
    ``runner/data/iris.csv`` with a header line; no download.
    """
    from importlib.resources import files

    resource = files("runner.data") / "iris.csv"
    path = Path(str(resource))
    if not path.is_file():
        raise DataError(f"iris: expected the packaged file runner/data/iris.csv; received nothing at {path}",
                        key="dataset.type")
    return TextFile(path, delimiter=",", header=True, kind="iris")


# --- non-finite values, and building -----------------------------------------------------------

class CheckedSource(Source):
    """Wraps any source and checks every batch for NaN and ±inf as it streams (no second pass)."""

    def __init__(self, source: Source, policy: str) -> None:
        self.source, self.policy = source, policy
        self.rows, self.features = source.rows, source.features
        self.label = getattr(source, "label", None) or Source.label

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        # The short call keeps plugin sources written against the older batches(batch_size) working.
        if start == 0 and stop is None:
            stream = self.source.batches(batch_size)
        else:
            stream = self.source.batches(batch_size, start, stop)
        row = start
        for batch in stream:
            if self.policy == "error":
                self._check(batch, row)
            row += len(batch)
            yield batch

    def _check(self, batch: np.ndarray, row: int) -> None:
        if batch.dtype.kind not in "fc":
            return
        # A finite sum proves every value finite without a mask; an overflowing sum falls through.
        # The errstate keeps NumPy's warnings off stderr: the error below is the one message.
        with np.errstate(all="ignore"):
            if np.isfinite(batch.sum()):
                return
        bad = ~np.isfinite(batch)
        count = int(bad.sum())
        if count == 0:
            return
        first = row + int(np.argmax(bad.any(axis=1)))
        where = self.source.locate(first) if hasattr(self.source, "locate") else ""
        raise DataError(
            f"{self.label}: expected finite values (dataset.nonfinite=error); received {count} non-finite "
            f"value{'s' if count != 1 else ''} in rows {row}..{row + len(batch) - 1}, the first in row "
            f"{first}{f' ({where})' if where else ''}; dataset.nonfinite=propagate lets them through",
            key="dataset.nonfinite")

    def describe(self) -> dict[str, Any]:
        return {**self.source.describe(), "nonfinite": self.policy}

    def locate(self, row: int) -> str:
        return self.source.locate(row) if hasattr(self.source, "locate") else ""


def build_dataset(cfg: Mapping[str, Any], *, features: int | None, base_dir: str) -> Source:
    """Builds the source that ``cfg["type"]`` names, checking its keys against the factory's.

    ``nonfinite`` is taken here for every type: the source's batches are checked as they stream.
    When the network sets its width (``features``), a source of another width fails here, with
    the shape-chain message of the layers and the data's name.

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
    policy = cfg.pop("nonfinite", "error")
    if policy not in NONFINITE_POLICIES:
        raise ConfigError(f"dataset.nonfinite={policy!r}: expected one of {', '.join(NONFINITE_POLICIES)}",
                          key="dataset.nonfinite")
    factory = DATASETS[kind]
    accepted = inspect.signature(factory).parameters
    for key in cfg:
        if key not in accepted or key == "base_dir":
            allowed = ", ".join([*(f"{p.name}={p.default!r}" for p in accepted.values() if p.name != "base_dir"),
                                 "nonfinite='error'"])
            raise ConfigError(f"dataset.{key}: not a key of dataset type {kind!r}; accepted: {allowed}", key=f"dataset.{key}")
    if "features" in accepted and cfg.get("features") is None:
        cfg["features"] = features
    if "base_dir" in accepted:
        cfg["base_dir"] = base_dir
    source = factory(**cfg)
    # An invalid prev (0, -1) is left to the layer checks, which say what a prev must be.
    valid_prev = isinstance(features, int) and not isinstance(features, bool) and features > 0
    if valid_prev and source.features != features:
        label = getattr(source, "label", None) or f"dataset.type={kind}"
        raise ConfigError(
            f"network.layers[0].prev={features} does not match the dataset width {source.features} "
            f"({label}); network.layers.0.prev=null takes the width from the data", key="network.layers[0].prev")
    return CheckedSource(source, policy)
