"""Row blocks: how a layer splits a batch so that its result never depends on the threads.

BLAS libraries pick their kernel, and so the rounding of ``x @ w``, by the shape of the call
and the number of threads (OpenBLAS gives other last bits for a (300, 100) @ (100, 100) product
on one thread than on two). A layer therefore multiplies in blocks of a fixed number of rows,
each one single-threaded BLAS call of the same shape, and runs the blocks on a thread pool: the
result is the same whatever the number of threads, and the same whatever the batch size when
batches are whole multiples of the block. The runner sets BLAS to one thread for the run.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Callable

from layers.activations import get_num_threads

BLOCK_ELEMENTS = 1 << 18  # a block's output stays in a core's L2 cache while its activation runs
MAX_BLOCK_ROWS = 8192

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def block_rows(n: int) -> int:
    """Rows per block for a layer of ``n`` units: a power of two, from 64 to 8192."""
    rows = MAX_BLOCK_ROWS
    while rows > 64 and rows * n > BLOCK_ELEMENTS:
        rows //= 2
    return rows


def _get_pool(size: int) -> concurrent.futures.ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=size, thread_name_prefix="layers")
            _pool_size = size
        return _pool


def for_each_block(rows: int, block: int, work: Callable[[int, int], None]) -> None:
    """Calls ``work(start, stop)`` for every block of ``rows``, on the pool when it helps."""
    starts = range(0, rows, block)
    threads = get_num_threads()
    if threads <= 1 or len(starts) == 1:
        for start in starts:
            work(start, min(start + block, rows))
        return
    futures = [_get_pool(threads).submit(work, start, min(start + block, rows)) for start in starts]
    for future in futures:
        future.result()
