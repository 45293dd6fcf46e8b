"""From the composed config to a validated plan, then to layers built through the registry.

Everything here checks the config before any array is allocated; errors name the config key.
"""

from __future__ import annotations

import importlib
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from hydra.utils import instantiate

from layers import LayerManager, get_act, get_layer
from layers.activations import COMPILED_ENV, compiled_available, compiled_gain
from layers.base import DTYPES
from layers.registry import scoped_registrations
from runner.config import LayerConf
from runner.errors import ConfigError

# The weights' stream is seeded apart from the data's: [seed, 0] vs [seed, 1].
WEIGHT_STREAM = 0

LAYER_KEYS = tuple(LayerConf.__dataclass_fields__)


@dataclass(frozen=True)
class LayerSpec:
    """One layer with every default filled in, ready to build."""

    index: int
    kind: str
    name: str
    prev: int
    n: int
    act: str
    act_dic: dict[str, Any]
    wb_width: float

    @property
    def key(self) -> str:
        return f"network.layers[{self.index}]"


def import_plugins(modules: list[str]) -> None:
    """Imports the ``plugins`` modules, which register layers, activations or datasets."""
    for i, module in enumerate(modules):
        try:
            importlib.import_module(module)
        except Exception as err:  # any failure of a user's module is a config problem here
            raise ConfigError(
                f"plugins[{i}]={module}: could not be imported ({type(err).__name__}: {err})",
                key=f"plugins[{i}]",
            ) from err


@contextmanager
def plugin_scope(modules: list[str]) -> Iterator[None]:
    """Undoes, after one job, what its ``plugins`` registered.

    Launchers run many jobs in one process (the basic launcher a whole sweep, joblib in reused
    workers). Without this scope a layer, activation or dataset registered by one job's plugin
    would still be known to a later job that lists no plugin. The plugin modules leave
    ``sys.modules`` too, so a later job that lists them imports them, and registers, again.
    """
    loaded = set(sys.modules)
    with scoped_registrations():
        try:
            yield
        finally:
            for module in modules:
                if module not in loaded:
                    sys.modules.pop(module, None)


def check_int(key: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ConfigError(f"{key}={value!r}: expected {expected}", key=key)
    return int(value)


KERNELS = ("auto", "compiled", "numpy")


def check_run_settings(cfg: dict[str, Any]) -> None:
    """Checks the top-level settings: dtype, batch_size, seed, wb_width, threads, kernels."""
    if cfg["dtype"] not in DTYPES:
        raise ConfigError(f"dtype={cfg['dtype']!r}: expected one of {', '.join(DTYPES)}", key="dtype")
    check_int("batch_size", cfg["batch_size"])
    check_int("seed", cfg["seed"], minimum=0)
    if cfg.get("threads") is not None:
        check_int("threads", cfg["threads"])
    wb_width = cfg["wb_width"]
    if not (np.isfinite(wb_width) and wb_width > 0):
        raise ConfigError(f"wb_width={wb_width!r}: expected a finite positive number", key="wb_width")
    kernels = cfg.get("kernels", "auto")
    if kernels not in KERNELS:
        raise ConfigError(f"kernels={kernels!r}: expected one of {', '.join(KERNELS)}", key="kernels")
    if kernels == "compiled" and not compiled_available():
        raise ConfigError("kernels='compiled': expected numba to be installed (pip install "
                          f"'fwdrunner[fast]') and {COMPILED_ENV} not 0", key="kernels")


# Below this many activation values (rows times the layers' widths, each layer weighted by
# layers.activations.compiled_gain) kernels=auto keeps the NumPy kernels: importing numba and
# loading its kernels costs about 0.5-1 s, which compiled kernels repay at roughly 1-8 ns a
# value for the functions that need exp, log or erf, and about 0.3 ns (the bias pass) for the
# piecewise-linear ones.
COMPILED_MIN_VALUES = 1 << 26


def use_compiled(kernels: str, *, rows: int, layers: list[tuple[int, str]]) -> bool:
    """Whether a run with this ``kernels`` setting uses the compiled kernels, for ``rows`` rows
    through ``layers`` given as (width, activation name)."""
    if kernels != "auto":
        return kernels == "compiled"
    values = rows * sum(n * compiled_gain(act) for n, act in layers)
    return values >= COMPILED_MIN_VALUES and compiled_available()


def resolve_layers(layers: list[dict[str, Any]], *, wb_width: float, width: int | None) -> list[LayerSpec]:
    """Fills in each layer's defaults and checks names, parameters and the shape chain.

    Args:
        layers: ``network.layers`` as plain dicts.
        wb_width: the top-level ``wb_width``, inherited by layers that set none.
        width: the dataset's width, when known; layer 0's ``prev`` defaults to it.
    """
    if not layers:
        raise ConfigError("network.layers: expected at least one layer; received none", key="network.layers")
    specs: list[LayerSpec] = []
    for i, layer in enumerate(layers):
        key = f"network.layers[{i}]"
        for unknown in sorted(set(layer) - set(LAYER_KEYS)):
            # Also refuses _target_: layers are built from registry names only.
            raise ConfigError(f"{key}.{unknown}: not a layer key; accepted: {', '.join(LAYER_KEYS)}",
                              key=f"{key}.{unknown}")
        kind = layer.get("kind") or ("output" if i == len(layers) - 1 else "middle")
        try:
            get_layer(kind)
        except ValueError as err:
            raise ConfigError(f"{key}.kind: {err}", key=f"{key}.kind") from None
        act_dic = dict(layer.get("act_dic") or {})
        try:
            get_act(layer["act"], **act_dic)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{key}.act={layer['act']}: {err}", key=f"{key}.act") from None
        n = check_int(f"{key}.n", layer.get("n"))
        prev = layer.get("prev")
        if i == 0:
            if prev is None and width is None:
                raise ConfigError(f"{key}.prev: expected a positive int (the dataset does not set its width)", key=f"{key}.prev")
            prev = check_int(f"{key}.prev", prev if prev is not None else width)
            if width is not None and prev != width:
                raise ConfigError(f"{key}.prev={prev} does not match the dataset width {width}", key=f"{key}.prev")
        else:
            before = specs[-1]
            if prev is None:
                prev = before.n
            elif check_int(f"{key}.prev", prev) != before.n:
                raise ConfigError(f"{key}.prev={prev} does not match {before.key}.n={before.n}", key=f"{key}.prev")
        own_width = layer.get("wb_width")
        width_key = f"{key}.wb_width" if own_width is not None else "wb_width"
        scale = own_width if own_width is not None else wb_width
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (np.isfinite(scale) and scale > 0):
            raise ConfigError(f"{width_key}={scale!r}: expected a finite positive number", key=width_key)
        name = layer.get("name") or f"layer{i}"
        if any(spec.name == name for spec in specs):
            raise ConfigError(f"{key}.name={name}: the name is already used by another layer", key=f"{key}.name")
        specs.append(LayerSpec(i, kind, name, int(prev), n, layer["act"], act_dic, float(scale)))
    return specs


def build_network(specs: list[LayerSpec], *, seed: int, dtype: str) -> LayerManager:
    """Builds the layers in stack order from one generator seeded with ``seed``.

    Each layer goes through ``hydra.utils.instantiate`` with the registry's own factory as the
    target: configs name layer kinds, never import paths.
    """
    rng = np.random.default_rng([seed, WEIGHT_STREAM])
    network = LayerManager()
    for spec in specs:
        layer = instantiate(
            {"_target_": "layers.registry.make_layer", "_convert_": "all", "kind": spec.kind,
             "name": spec.name, "prev": spec.prev, "n": spec.n, "act": spec.act,
             "act_dic": spec.act_dic, "wb_width": spec.wb_width, "dtype": dtype},
            rng=rng,
        )
        network.append(layer)
    return network
