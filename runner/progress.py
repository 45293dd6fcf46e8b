"""Progress of a run: a tqdm bar on a terminal, and a line in runner.log every few seconds."""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("runner")

LOG_EVERY_S = 5.0  # a run under a batch scheduler can be followed in runner.log
BAR_DELAY_S = 1.0  # short runs show no bar at all


class Progress:
    """Counts rows as they are written; shows a bar only when stderr is a terminal."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self._t0 = self._last_log = time.perf_counter()
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm  # imported only for a terminal: start-up stays fast

            self._bar = tqdm(total=total, unit="rows", unit_scale=True, delay=BAR_DELAY_S,
                             file=sys.stderr, dynamic_ncols=True, leave=False)

    def update(self, rows: int) -> None:
        self.done += rows
        if self._bar is not None:
            self._bar.update(rows)
        now = time.perf_counter()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            rate = self.done / (now - self._t0)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("progress: %d/%d rows (%.1f%%), %.0f rows/s, ETA %.0f s",
                     self.done, self.total, 100 * self.done / self.total, rate, eta)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def limit_threads(threads: int | None) -> Iterator[int]:
    """Runs the layers on ``threads`` threads (default: every core); yields the count in use.

    The previous limits come back afterwards, so a worker process that runs several jobs
    (joblib reuses them) does not carry one job's setting into the next.
    """
    from layers.activations import get_num_threads, set_num_threads
    from layers.blocks import blas_single_threaded

    threads = threads or os.cpu_count() or 1
    before = get_num_threads()
    # BLAS runs single-threaded inside the layers' row blocks, which run on `threads` threads:
    # the results then do not depend on the thread count (layers/blocks.py says why).
    with blas_single_threaded():
        set_num_threads(threads)
        try:
            yield threads
        finally:
            set_num_threads(before)
