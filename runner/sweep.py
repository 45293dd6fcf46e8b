"""End of a multirun: the sweep summary, built from the job directories on disk.

Hydra skips ``on_multirun_end`` when a job raises, and with the joblib or submitit launchers the
jobs run in other processes. The runner's jobs never raise (a failure is recorded in the job's
``run.json``), and the summary reads only files, so it works the same with every launcher.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.errors import EXIT_CONFIG

# The sweep's exit code, read by runner.__main__ once Hydra returns.
exit_code = 0


class SweepSummary(Callback):
    """Writes ``sweep_summary.csv``, ``sweep.png`` and the table in ``runner.log`` of the sweep dir."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global exit_code
        from runner.summarize import summarize

        sweep_dir = Path(config.hydra.sweep.dir)
        summary = summarize(sweep_dir, plot=bool(config.get("stats", {}).get("plot", True)))
        table = summary.table()
        print(table, flush=True)
        with open(sweep_dir / "runner.log", "a", encoding="utf-8") as log:
            log.write(f"[{datetime.now().isoformat(sep=' ', timespec='seconds')}] sweep summary\n{table}\n")
        if summary.unfinished:
            exit_code = EXIT_CONFIG
