"""End of a multirun: the sweep summary, built from the job directories on disk.

Hydra skips ``on_multirun_end`` when a job raises, and with the joblib or submitit launchers the
jobs run in other processes; the runner's jobs never raise, and the summary reads only files, so
it works the same with every launcher.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.errors import EXIT_CONFIG

log = logging.getLogger("runner")

exit_code = 0


class SweepSummary(Callback):
    """Writes ``sweep_summary.csv`` and ``sweep.png`` in the sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global exit_code
        from runner.summarize import summarize

        summary = summarize(config.hydra.sweep.dir, plot=bool(config.get("stats", {}).get("plot", True)))
        table = summary.table()
        print(table, flush=True)
        log.info("sweep summary\n%s", table)
        if any(row["status"] != "completed" for row in summary.rows):
            exit_code = EXIT_CONFIG
