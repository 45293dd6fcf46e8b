"""``python -m runner.merge <sweep dir>``: join the shards of one dataset into one result.

The jobs of the sweep must be the K shards (``dataset.shard=range(0,K)``) of one config. Their
outputs are copied in row order into ``<sweep dir>/merged/outputs.npy``, streamed, and their
statistics accumulators are merged block by block into ``merged/stats.json``: both equal what a
single run over all rows writes. ``merged/merge.json`` records the shards and the hashes.
Exits 0 on success and 2, with one line on stderr, when the shards do not make one whole.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from runner.artifacts import NpyWriter, file_hashes, write_json
from runner.errors import ConfigError
from runner.record import RECORD
from runner.layout import OUTPUTS, STATE, STATS
from runner.summarize import job_dirs

COPY_ROWS = 65536


def _config(job: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((job / ".hydra" / "config.yaml").read_text())


def _shards(sweep: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The job dirs in shard order, checked to be all the shards of one config."""
    jobs = []
    for job in job_dirs(sweep):
        record = json.loads((job / RECORD).read_text()) if (job / RECORD).exists() else {}
        if record.get("status") != "completed" or "shard" not in record:
            raise ConfigError(f"{job}: expected a completed shard run (dataset.shards > 1); "
                              f"received status {record.get('status')!r}", key=str(job))
        jobs.append((job, record))
    if not jobs:
        raise ConfigError(f"{sweep}: expected job directories of a shard sweep; found none", key=str(sweep))
    count = jobs[0][1]["shard"]["count"]
    indices = sorted(record["shard"]["index"] for _, record in jobs)
    if indices != list(range(count)):
        raise ConfigError(f"{sweep}: expected shards 0..{count - 1} once each; received {indices}", key=str(sweep))

    def without_shard(job: Path) -> dict[str, Any]:
        cfg = _config(job)
        cfg["dataset"].pop("shard", None)
        return cfg

    first = without_shard(jobs[0][0])
    for job, _ in jobs[1:]:
        if without_shard(job) != first:
            raise ConfigError(f"{job}: its config differs from {jobs[0][0]} in more than dataset.shard", key=str(job))
    return sorted(jobs, key=lambda jr: jr[1]["shard"]["index"])


def merge(sweep: Path) -> Path:
    from layers.activations import allow_compiled
    from runner.datasets import NpyFile

    jobs = _shards(sweep)
    cfg = _config(jobs[0][0])
    out_dir = sweep / "merged"
    out_dir.mkdir(exist_ok=True)
    # Shards past the last row are empty: boundaries are multiples of lcm(batch_size, 4096).
    sources = [NpyFile.open(job / OUTPUTS) for job, record in jobs if record["rows"] > 0]
    rows = sum(s.rows for s in sources)
    writer = NpyWriter(out_dir / OUTPUTS, (rows, sources[0].features), sources[0].header.dtype)
    try:
        for source in sources:
            for batch in source.batches(COPY_ROWS):
                writer.write(batch)
        writer.close()
    except BaseException:
        writer.discard()
        raise
    artifacts = [OUTPUTS]
    # the statistics fold as the shards computed them: with the compiled or the NumPy reduction
    with allow_compiled(jobs[0][1].get("kernels") == "compiled"):
        if (jobs[0][0] / STATE).exists():
            artifacts.append(_merge_stats(jobs, cfg, out_dir, rows))
    write_json(out_dir / "merge.json", {
        "status": "completed", "rows": rows, "shards": [str(job) for job, _ in jobs],
        "artifacts": file_hashes(out_dir, artifacts)})
    return out_dir


def _merge_stats(jobs: list[tuple[Path, dict[str, Any]]], cfg: dict[str, Any], out_dir: Path,
                 rows: int) -> str:
    """Folds the shards' statistics states into ``out_dir/stats.json``; returns its name."""
    from layers import get_act
    from runner.stats import LayerStats

    layers = json.loads((jobs[0][0] / STATS).read_text())["layers"]
    merged = []
    for i, (layer, spec) in enumerate(zip(layers, cfg["network"]["layers"])):
        options = {"n": layer["shape"][1], "bins": cfg["stats"]["bins"],
                   "output_range": get_act(layer["act"], **(spec.get("act_dic") or {})).output_range}
        total = None
        for job, _ in jobs:
            with np.load(job / STATE) as z:
                state = {k.split("_", 1)[1]: z[k] for k in z.files if k.startswith(f"l{i}_")}
            acc = LayerStats.from_state(state, **options)
            total = acc if total is None else total.merge(acc)
        header = {k: layer[k] for k in ("index", "name", "kind", "act")}
        merged.append({**header, "shape": [rows, layer["shape"][1]], **total.result()})
    write_json(out_dir / STATS, {"layers": merged})
    return STATS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.merge", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir}: not a directory", file=sys.stderr)
        return 2
    try:
        out = merge(args.sweep_dir)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"merged {len(job_dirs(args.sweep_dir))} shards into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
