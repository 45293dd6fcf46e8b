"""Activation-distribution figures drawn from precomputed histograms.

Figures are drawn from the ``hist`` entries of ``stats.json`` layer dicts
(``edges`` and ``counts``), never from raw activations, so drawing costs the
same whatever the size of the run. matplotlib is imported only when a figure
is drawn, and only its object-oriented API with the Agg canvas is used, which
leaves pyplot's global state alone.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from runner.artifacts import atomic

__all__ = ["PlottingUnavailable", "plot_activations", "plot_sweep"]

_DPI = 100
_PANEL_W = 2.2
_PANEL_H = 2.4
_ROW_H = 2.0
_LABEL_W = 1.6
_BAR_COLOR = "#4c72b0"


class PlottingUnavailable(RuntimeError):
    """matplotlib cannot be imported, so no figure can be drawn."""


def _figure_class():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise PlottingUnavailable(
            "matplotlib is not installed; install the plot extra: pip install -e '.[plot]'") from err
    return Figure, FigureCanvasAgg


def _new_figure(width: float, height: float):
    Figure, FigureCanvasAgg = _figure_class()
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _panel_title(layer: dict[str, Any]) -> str:
    name = layer.get("name", f"layer {layer.get('index', '?')}")
    act = layer.get("act")
    return f"{name} ({act})" if act else str(name)


def _draw_hist(ax, layer: dict[str, Any]) -> None:
    hist = layer.get("hist") or {}
    edges, counts = hist.get("edges"), hist.get("counts")
    if not edges or not counts or len(edges) != len(counts) + 1:
        ax.text(0.5, 0.5, "no histogram", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    # Fractions, not counts: layers of different widths share one y axis.
    total = sum(counts) or 1
    ax.stairs([c / total for c in counts], edges, fill=True, color=_BAR_COLOR)
    ax.set_xlim(edges[0], edges[-1])
    ax.tick_params(labelsize=7)


def _save(fig, path: str | os.PathLike) -> None:
    with atomic(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)


def plot_activations(layers: list[dict], path: str | os.PathLike, *, title: str | None = None) -> None:
    """Draw one histogram panel per layer, side by side, and write a PNG.

    Args:
        layers: Layer dicts as in ``stats.json`` (keys ``name``, ``act``, ``hist``).
        path: Output PNG path; written atomically.
        title: Optional figure title.

    Raises:
        PlottingUnavailable: matplotlib cannot be imported.
        ValueError: ``layers`` is empty.
    """
    if not layers:
        raise ValueError("plot_activations needs at least one layer")
    n = len(layers)
    fig = _new_figure(_PANEL_W * n, _PANEL_H + (0.3 if title else 0.0))
    axes = fig.subplots(1, n, squeeze=False, sharey=True)[0]
    for ax, layer in zip(axes, layers):
        _draw_hist(ax, layer)
        ax.set_title(_panel_title(layer), fontsize=9)
    axes[0].set_ylabel("fraction of values", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_sweep(jobs: list[tuple[str, list[dict] | None]], path: str | os.PathLike, *,
               messages: Sequence[str | None] | None = None) -> None:
    """Draw a grid of histograms: one row per job, one column per layer.

    Args:
        jobs: ``(label, layers)`` per job; ``label`` is the job's overrides
            string and ``layers`` its ``stats.json`` layer dicts, or None when
            the job has no statistics (its row is left empty).
        path: Output PNG path; written atomically.
        messages: Optional text per job shown in an empty row; "failed" by default.

    Raises:
        PlottingUnavailable: matplotlib cannot be imported.
        ValueError: ``jobs`` is empty, or ``messages`` has the wrong length.
    """
    if not jobs:
        raise ValueError("plot_sweep needs at least one job")
    if messages is not None and len(messages) != len(jobs):
        raise ValueError(f"messages has {len(messages)} entries for {len(jobs)} jobs")
    n_cols = max([len(layers) for _, layers in jobs if layers] or [1])
    n_rows = len(jobs)
    fig = _new_figure(_LABEL_W + _PANEL_W * n_cols, 0.4 + _ROW_H * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, (label, layers) in enumerate(jobs):
        row = axes[r]
        row[0].set_ylabel(label or "(no overrides)", fontsize=8, rotation=0, ha="right", va="center")
        if not layers:
            text = (messages[r] if messages is not None and messages[r] else None) or "failed"
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
            row[0].text(0.02, 0.5, text, ha="left", va="center", transform=row[0].transAxes,
                        fontsize=9, color="#b03030")
            continue
        for c, ax in enumerate(row):
            if c < len(layers):
                _draw_hist(ax, layers[c])
                # Titled in every row: a sweep may change a layer's activation.
                ax.set_title(_panel_title(layers[c]), fontsize=8)
            else:
                ax.set_visible(False)
    fig.tight_layout()
    _save(fig, path)
