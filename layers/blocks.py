"""Row blocks: how a layer splits a batch so that its result never depends on the threads.

BLAS libraries pick their kernel, and so the rounding of ``x @ w``, by the shape of the call
and the number of threads (OpenBLAS gives other last bits for a (300, 100) @ (100, 100) product
on one thread than on two). A layer therefore multiplies in blocks of a fixed number of rows,
each one single-threaded BLAS call of the same shape, and runs the blocks on a thread pool: the
result is the same whatever the number of threads, and the same whatever the batch size when
batches are whole multiples of the block.

``blas_single_threaded`` holds BLAS at one thread while blocks run. Without it, every block's
GEMM would also start BLAS's own threads: on 2 cores that oversubscription costs a third of
the speed of the wide MLP. The runner holds it for a whole run; a layer called directly takes
it per call (about 10 µs).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from layers.activations import get_num_threads

BLOCK_ELEMENTS = 1 << 18  # a block's output stays in a core's L2 cache while its activation runs
MAX_BLOCK_ROWS = 8192

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()
_tls = threading.local()  # in_block: this thread is running a block

# BLAS's thread count is process-wide, so the limit is shared: the outermost holder sets it and
# the last one out restores it; nested holders (a run, then each layer) only count.
_blas_lock = threading.Lock()
_blas_holders = 0
_blas_controller: Any = None
_blas_limiter: Any = None


@contextmanager
def blas_single_threaded() -> Iterator[None]:
    """BLAS on one thread inside the block; the previous setting comes back afterwards."""
    global _blas_holders, _blas_controller, _blas_limiter
    with _blas_lock:
        if _blas_holders == 0:
            if _blas_controller is None:
                from threadpoolctl import ThreadpoolController  # imported on first use only

                _blas_controller = ThreadpoolController()
            with _blas_control():
                _blas_limiter = _blas_controller.limit(limits=1, user_api="blas")
        _blas_holders += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_holders -= 1
            if _blas_holders == 0:
                with _blas_control():
                    _blas_limiter.restore_original_limits()
                _blas_limiter = None


@contextmanager
def _blas_control() -> Iterator[None]:
    """Lets this thread change OpenBLAS's thread count, and gives that right back afterwards.

    threadpoolctl 3.8 lets only one thread at a time change OpenBLAS's process-wide count: the
    first to set it, until released. Other threads' calls do nothing, silently, so a forward
    pass run from any thread but the main one kept BLAS threaded, with other last bits. Changes
    here are serialised by ``_blas_lock``, so the changing thread may take that right.
    """
    import threadpoolctl

    clear = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if clear is None:  # threadpoolctl < 3.8: any thread may change the count
        yield
        return
    clear(force=True)
    try:
        yield
    finally:
        clear(force=True)


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
    """Calls ``work(start, stop)`` for every block of ``rows``, on the pool when it helps.

    The calling thread takes blocks too, from the same counter as the pool's threads
    (``next`` on an ``itertools.count`` is atomic under the GIL): one thread fewer to wake
    per call, and no thread idle while another still has blocks. On a (8192, 100) float32
    batch of 2048-row blocks that took the product from 200-250 to 195-225 ns per row
    (``benchmarks/bench_layer_block.py``).

    A call from inside a block (an observer of ``LayerManager.forward``, say) runs inline:
    waiting there for the pool's threads could wait for itself.
    """
    nblocks = -(-rows // block)
    threads = 1 if getattr(_tls, "in_block", False) else min(get_num_threads(), nblocks)
    counter = itertools.count()

    def worker() -> None:
        outer = getattr(_tls, "in_block", False)
        _tls.in_block = True
        try:
            while (i := next(counter)) < nblocks:
                start = i * block
                work(start, min(start + block, rows))
        finally:
            _tls.in_block = outer

    with blas_single_threaded():
        if threads <= 1:
            worker()
            return
        futures = [_get_pool(threads - 1).submit(worker) for _ in range(threads - 1)]
        try:
            worker()
        finally:
            for future in futures:
                future.result()
