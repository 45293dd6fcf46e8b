"""Memory and disk a run will need, estimated from the plan before anything is allocated."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from runner.errors import ConfigError
from runner.stats import BLOCK_ROWS as STATS_BLOCK_ROWS


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def available_memory() -> int | None:
    """``MemAvailable`` from /proc/meminfo, in bytes, or None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_needed(*, widths: list[int], features: int, batch_size: int, dtype: str,
                  keep_u: bool, stats: bool) -> tuple[int, int]:
    """``(parameter bytes, bytes of one batch's working set)``."""
    item = np.dtype(dtype).itemsize
    dims = [features, *widths]
    # Parameters, plus the float64 draws of the largest weight matrix while it is made.
    params = sum((p * n + n) * item for p, n in zip(dims, dims[1:])) + max(p * n for p, n in zip(dims, dims[1:])) * 8
    batch = batch_size * features * (8 + item)  # the source's batch and its cast
    batch += sum(batch_size * n * item for n in widths) * (2 if keep_u else 1)
    if stats:
        batch += sum(2 * STATS_BLOCK_ROWS * n * 8 for n in widths)
    return params, batch


def disk_needed(*, rows: int, widths: list[int], dtype: str, save_activations: bool) -> int:
    item = np.dtype(dtype).itemsize
    need = rows * widths[-1] * item
    if save_activations:
        # u and a of every layer, written as parts and then packed: twice, for a while.
        need += 2 * 2 * rows * sum(widths) * item
    return need


def check_budget(*, widths: list[int], features: int, rows: int, batch_size: int, dtype: str,
                 save_activations: bool, stats: bool, run_dir: Path) -> None:
    """Refuses a run that cannot fit in the available memory or on the disk of ``run_dir``."""
    batch_size = min(batch_size, rows)  # the last word on a batch is the dataset's size
    params, batch = memory_needed(widths=widths, features=features, batch_size=batch_size, dtype=dtype,
                                  keep_u=save_activations, stats=stats)
    free = available_memory()
    if free is not None and params + batch > free:
        lower = "lower batch_size" if batch > params else "lower the layer widths (network.layers[i].n)"
        raise ConfigError(
            f"batch_size={batch_size}: the run needs about {params + batch} bytes of memory "
            f"({_gb(params)} of parameters, {_gb(batch)} per batch) but {free} bytes ({_gb(free)}) are "
            f"available; {lower}", key="batch_size")
    need = disk_needed(rows=rows, widths=widths, dtype=dtype, save_activations=save_activations)
    space = shutil.disk_usage(run_dir).free
    if need > space:
        what = "save_activations=true" if save_activations else f"dataset.rows={rows}"
        raise ConfigError(
            f"{what}: the run would write about {need} bytes ({_gb(need)}) to {run_dir}, which has "
            f"{space} bytes ({_gb(space)}) free", key="save_activations" if save_activations else "dataset.rows")
