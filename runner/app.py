"""One run: validate the plan, build the network, stream the dataset through it, write artifacts.

Artifacts of a run directory (see the README's artifact reference):
``outputs.npy``, ``params.npz``, ``stats.json``, ``activations.npz`` (opt-in),
``activations.png``, ``runner.log`` and ``run.json``.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from layers import LayerManager
from layers.activations import allow_compiled
from runner.artifacts import NpyWriter, atomic, file_hashes, write_json, write_npz
from runner.budget import STATS_BLOCK_ROWS, check_budget
from runner.build import (LayerSpec, build_network, check_int, check_run_settings, import_plugins, plugin_scope,
                          resolve_layers, use_compiled)
from runner.datasets import Source, build_dataset
from runner.errors import Interrupted
from runner.jobs import config_digest
from runner.progress import Progress, limit_threads
from runner.layout import ACTIVATIONS, FIGURE, OUTPUTS, PARAMS, STATE, STATS
from runner.shards import Shard, pop_shard_keys, shard_of
from runner.record import RunRecord, environment, git_state

log = logging.getLogger("runner")



def say(message: str) -> None:
    """Prints to the terminal and writes the same line to ``runner.log``."""
    print(message, flush=True)
    log.info(message)


@dataclass
class Plan:
    """Everything a run needs, checked, before any array is allocated."""

    settings: dict[str, Any]
    source: Source
    layers: list[LayerSpec]
    shard: Shard  # the rows this run covers: all of them unless dataset.shards > 1


def make_plan(cfg: dict[str, Any], *, base_dir: str) -> Plan:
    """Checks the composed config (as a plain dict) and resolves every default."""
    import_plugins(list(cfg.get("plugins") or []))
    check_run_settings(cfg)
    layers = list(cfg["network"]["layers"])
    first_prev = layers[0].get("prev") if layers else None
    if first_prev is not None:  # checked here: a synthetic dataset takes its width from it
        check_int("network.layers[0].prev", first_prev)
    dataset = dict(cfg["dataset"])
    count, index = pop_shard_keys(dataset)
    source = build_dataset(dataset, features=first_prev, base_dir=base_dir)
    specs = resolve_layers(layers, wb_width=cfg["wb_width"], width=source.features)
    return Plan(cfg, source, specs, shard_of(source.rows, count=count, index=index, batch_size=cfg["batch_size"]))


def summary_table(network: LayerManager, specs: list[LayerSpec]) -> str:
    rows = [("#", "name", "kind", "prev→n", "act", "params")]
    for spec, layer in zip(specs, network):
        rows.append((str(spec.index), spec.name, spec.kind, f"{spec.prev}→{spec.n}", repr(layer.act)
                     .removeprefix("Activation(").removesuffix(")"), f"{layer.num_params:,}"))
    rows.append(("", "total", "", "", "", f"{network.num_params:,}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class ActivationWriter:
    """Streams every layer's ``u{i}`` and ``a{i}`` to ``.npy`` files, then packs them as one ``.npz``."""

    def __init__(self, run_dir: Path, rows: int, specs: list[LayerSpec], dtype: str) -> None:
        self.run_dir = run_dir
        self.writers = {}
        for spec in specs:
            for prefix in ("u", "a"):
                name = f"{prefix}{spec.index}"
                self.writers[name] = NpyWriter(run_dir / f".{name}.part.npy", (rows, spec.n), dtype)

    def observe(self, i: int, u: np.ndarray | None, y: np.ndarray) -> None:
        self.writers[f"u{i}"].write(u)
        self.writers[f"a{i}"].write(y)

    def close(self) -> None:
        import zipfile

        parts = {name: writer.close() for name, writer in self.writers.items()}
        # Stored, not deflated: the same layout np.savez writes, built by copying in 1 MiB blocks.
        with atomic(self.run_dir / ACTIVATIONS) as tmp, \
                zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, part in parts.items():
                with open(part, "rb") as src, zf.open(f"{name}.npy", "w", force_zip64=True) as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
                part.unlink()

    def discard(self) -> None:
        for writer in self.writers.values():
            writer.discard()
        for part in self.run_dir.glob(".*.part.npy"):
            part.unlink(missing_ok=True)


def run(cfg: dict[str, Any], run_dir: str | os.PathLike, *, base_dir: str) -> RunRecord:
    """Executes one run into ``run_dir`` and returns its completed record.

    Raises whatever stopped the run, after recording it in ``run.json`` as ``failed`` (or
    ``interrupted``).
    """
    run_dir = Path(run_dir)
    record = RunRecord(run_dir, {
        "seed": cfg.get("seed"), "dtype": cfg.get("dtype"), "rows": None, "run_dir": str(run_dir),
        "cwd": base_dir, "git": git_state(base_dir), "config_sha256": config_digest(cfg), **environment(),
    })
    writers: list[Any] = []
    try:
        with plugin_scope(list(cfg.get("plugins") or [])):
            plan = make_plan(cfg, base_dir=base_dir)
            check_budget(widths=[s.n for s in plan.layers], features=plan.source.features,
                         rows=plan.shard.rows, batch_size=cfg["batch_size"], dtype=cfg["dtype"],
                         save_activations=cfg["save_activations"], stats=cfg["stats"]["enabled"],
                         run_dir=run_dir)
            record.data["rows"] = plan.shard.rows
            record.data["dataset"] = plan.source.describe()
            if plan.shard.count > 1:
                record.data["shard"] = plan.shard.describe()
            # by the whole dataset's size, so that every shard of a run decides alike
            compiled = use_compiled(cfg.get("kernels", "auto"), rows=plan.source.rows,
                                    layers=[(s.n, s.act) for s in plan.layers])
            record.data["kernels"] = "compiled" if compiled else "numpy"
            with limit_threads(cfg.get("threads")) as threads, allow_compiled(compiled):
                record.data["threads"] = threads
                record.save()
                artifacts = execute(plan, run_dir, writers, threads)
    except BaseException as err:
        for writer in writers:
            writer.discard()
        status = "interrupted" if isinstance(err, (Interrupted, KeyboardInterrupt)) else "failed"
        record.finish(status, error=err)
        raise
    record.finish("completed", artifacts=file_hashes(run_dir, artifacts))
    return record


def execute(plan: Plan, run_dir: Path, writers: list[Any], threads: int = 1) -> list[str]:
    """The forward passes and the artifacts on ``threads`` cores; returns the artifacts' names."""
    cfg, source, specs, shard = plan.settings, plan.source, plan.layers, plan.shard
    rows = shard.rows
    dtype = np.dtype(cfg["dtype"])
    network = build_network(specs, seed=cfg["seed"], dtype=cfg["dtype"])
    say(summary_table(network, specs))
    part = f" (shard {shard.index} of {shard.count}: rows {shard.start}..{shard.stop})" if shard.count > 1 else ""
    say(f"dataset: {source.describe()['type']} {source.rows} × {source.features}{part}, "
        f"batch_size={cfg['batch_size']}, dtype={dtype}")

    n_last = specs[-1].n
    outputs = NpyWriter(run_dir / OUTPUTS, (rows, n_last), dtype)
    writers.append(outputs)
    activations = None
    if cfg["save_activations"]:
        activations = ActivationWriter(run_dir, rows, specs, cfg["dtype"])
        writers.append(activations)
    stats_cfg = cfg["stats"]
    layer_stats = None
    if stats_cfg["enabled"]:
        first = first_block_ranges(network, source, cfg) if shard.start > 0 else None
        layer_stats = make_layer_stats(network, stats_cfg, first)

    # Each layer's statistics go to a worker as soon as its activations are ready, and run
    # beside the next layers' forward pass; every accumulator still sees its rows in order.
    # On one thread they run inline: a job given one core (parallel jobs) keeps to one core.
    workers = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    pending: list[Future] = []

    def observe(i: int, u: np.ndarray | None, y: np.ndarray) -> None:
        if activations is not None:
            activations.observe(i, u, y)
        if layer_stats is not None:
            if workers is None:
                layer_stats[i].update(y)
            else:
                pending.append(workers.submit(layer_stats[i].update, y))

    observer = observe if (activations is not None or layer_stats is not None) else None
    progress = Progress(rows, enabled=cfg["progress"])
    t0 = time.perf_counter()
    try:
        for batch in source.batches(cfg["batch_size"], shard.start, shard.stop):
            x = batch.astype(dtype, copy=False)
            outputs.write(network.forward(x, keep_u=activations is not None, observe=observer))
            for done in pending:  # the next batch overwrites the layers' buffers
                done.result()
            pending.clear()
            progress.update(len(x))
    finally:
        if workers is not None:
            workers.shutdown(wait=True, cancel_futures=True)
    elapsed = time.perf_counter() - t0
    progress.close()

    written = [OUTPUTS]
    outputs.close()
    write_npz(run_dir / PARAMS, network.params())
    written.append(PARAMS)
    if activations is not None:
        activations.close()
        written.append(ACTIVATIONS)
    if layer_stats is not None:
        layers = [{**layer_header(s, rows), **acc.result()} for s, acc in zip(specs, layer_stats)]
        write_json(run_dir / STATS, {"layers": layers})
        written.append(STATS)
        if shard.count > 1:
            write_npz(run_dir / STATE, {f"l{i}_{k}": v for i, acc in enumerate(layer_stats)
                                        for k, v in acc.state().items()})
            written.append(STATE)
        if stats_cfg["plot"] and draw_figure(run_dir, layers):
            written.append(FIGURE)
    rate = rows / elapsed if elapsed > 0 else float("inf")
    say(f"done: {rows} rows → {OUTPUTS} ({rows}, {n_last}) {dtype} "
        f"in {elapsed:.3f} s ({rate:,.0f} rows/s); run dir: {run_dir}")
    return written


def layer_header(spec: LayerSpec, rows: int) -> dict[str, Any]:
    """The fields that name a layer in ``stats.json``."""
    return {"index": spec.index, "name": spec.name, "kind": spec.kind, "act": spec.act, "shape": [rows, spec.n]}


def stats_options(layer: Any, stats_cfg: dict[str, Any]) -> dict[str, Any]:
    """LayerStats arguments; stats.range is for unbounded activations, bounded ones use their range."""
    hist_range = tuple(stats_cfg["range"]) if stats_cfg.get("range") else None
    return {"n": layer.n, "bins": stats_cfg["bins"], "output_range": layer.act.output_range,
            "hist_range": hist_range if layer.act.output_range is None else None}


def make_layer_stats(network: LayerManager, stats_cfg: dict[str, Any],
                     first: list[tuple[float, float] | None] | None = None) -> list[Any]:
    from runner.stats import LayerStats

    return [LayerStats(**stats_options(layer, stats_cfg), first_block_range=first[i] if first else None)
            for i, layer in enumerate(network)]


def first_block_ranges(network: LayerManager, source: Source, cfg: dict[str, Any]) -> list[Any]:
    """The histogram ranges a run from row 0 fixes on its first block, for a shard that starts later.

    The first batch is computed as that run computes it, and its first block is what it reads.
    """
    from runner.stats import robust_range

    batch = next(source.batches(cfg["batch_size"], 0, min(cfg["batch_size"], source.rows)))
    ranges: list[Any] = []
    network.forward(batch.astype(cfg["dtype"], copy=False),
                    observe=lambda i, u, y: ranges.append(robust_range(y[:STATS_BLOCK_ROWS].astype(np.float64))))
    return ranges


def draw_figure(run_dir: Path, layers: list[dict[str, Any]]) -> bool:
    """Draws ``activations.png``; without matplotlib, says how to get it and carries on."""
    from runner.figures import PlottingUnavailable, plot_activations

    try:
        plot_activations(layers, run_dir / FIGURE)
    except PlottingUnavailable as err:
        say(f"note: {err}; {FIGURE} was not drawn")
        return False
    return True
