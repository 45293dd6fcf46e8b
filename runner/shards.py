"""Data-parallel shards: ``dataset.shards=K dataset.shard=i`` runs the i-th of K row ranges.

Shard boundaries are multiples of ``lcm(batch_size, 4096)`` rows: every shard then computes the
same batches as one run over all rows, and its statistics blocks line up with that run's, so
``python -m runner.merge`` rebuilds that run's ``outputs.npy`` and ``stats.json`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from runner.budget import STATS_BLOCK_ROWS
from runner.errors import ConfigError



@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def describe(self) -> dict[str, Any]:
        return {"index": self.index, "count": self.count, "start": self.start, "stop": self.stop}


def pop_shard_keys(dataset: dict[str, Any]) -> tuple[int, int]:
    """Removes ``shards``/``shard`` from the dataset config and checks them."""
    count, index = dataset.pop("shards", 1), dataset.pop("shard", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"dataset.shards={count!r}: expected a positive int", key="dataset.shards")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ConfigError(f"dataset.shard={index!r}: expected an int from 0 to {count - 1} "
                          f"(dataset.shards={count})", key="dataset.shard")
    return count, index


def shard_of(rows: int, *, count: int, index: int, batch_size: int) -> Shard:
    align = math.lcm(batch_size, STATS_BLOCK_ROWS)
    step = math.ceil(rows / count / align) * align
    start = min(index * step, rows)
    return Shard(index, count, start, min(start + step, rows))
