"""Structured configs: the schema Hydra checks the YAML and the overrides against.

Registered in Hydra's ConfigStore as ``runner_schema``; ``conf/config.yaml`` puts it first in its
defaults list, so ``network.layers.0.n=abc`` fails at compose time, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class LayerConf:
    """One layer, with the seed's keys. Unset ``prev``/``wb_width``/``kind``/``name`` are derived."""

    n: int = MISSING
    prev: Optional[int] = None  # default: the previous layer's n (the dataset's width for layer 0)
    act: str = "ReLU"
    act_dic: Dict[str, Any] = field(default_factory=dict)
    wb_width: Optional[float] = None  # default: the top-level wb_width
    name: Optional[str] = None  # default: layer{index}
    kind: Optional[str] = None  # default: "output" for the last layer, "middle" for the others


@dataclass
class NetworkConf:
    layers: List[LayerConf] = field(default_factory=list)


@dataclass
class StatsConf:
    enabled: bool = True
    bins: int = 50
    range: Optional[List[float]] = None  # histogram range for unbounded activations
    plot: bool = True


@dataclass
class RunConf:
    network: NetworkConf = field(default_factory=NetworkConf)
    # Each dataset type has its own keys, checked when the source is built (runner.datasets).
    dataset: Dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    wb_width: float = 0.05
    dtype: str = "float64"
    batch_size: int = 16384
    save_activations: bool = False
    stats: StatsConf = field(default_factory=StatsConf)
    plugins: List[str] = field(default_factory=list)
    progress: bool = True
    threads: Optional[int] = None
    kernels: str = "auto"
    debug: bool = False


# Plain lines on the console are printed by the runner itself; the log file gets timestamps.
JOB_LOGGING = {
    "version": 1,
    "formatters": {"file": {"format": "[%(asctime)s][%(levelname)s] %(message)s"}},
    "handlers": {
        "file": {
            "class": "logging.FileHandler",
            "formatter": "file",
            "filename": "${hydra.runtime.output_dir}/${hydra.job.name}.log",
        }
    },
    "root": {"level": "INFO", "handlers": ["file"]},
    "disable_existing_loggers": False,
}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="runner_schema", node=RunConf)
    cs.store(group="hydra/job_logging", name="runner", node=JOB_LOGGING)
