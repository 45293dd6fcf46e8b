"""The experiment runner: ``python -m runner`` and the readers of its run directories.

``load_run`` and ``load_sweep`` (runner.results) are imported on first use, so that starting
the CLI does not pay for them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"  # keep in step with pyproject.toml (a test checks)
__all__ = ["load_run", "load_sweep"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from runner import results

        return getattr(results, name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")
