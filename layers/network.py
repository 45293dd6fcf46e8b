"""The layer manager: an ordered stack of layers, addressable by index and by name."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

from layers.base import BaseLayer
from layers.blocks import blas_single_threaded

# Called after each layer of a batch as observe(index, u, y); u is None unless keep_u was set.
Observer = Callable[[int, "np.ndarray | None", np.ndarray], None]


class LayerManager:
    """Holds the layers of a network in order, as the seed's layer manager does.

    ``net[0]`` and ``net["h1"]`` both return a layer; ``len(net)``, iteration and ``forward``
    work as for a list of layers applied in turn.

    Forward reuses one buffer per layer across batches, so the array it returns is overwritten
    by the next call: consume (write, copy or reduce) it before the next batch.
    """

    def __init__(self, layers: Sequence[BaseLayer] = ()) -> None:
        self._layers: list[BaseLayer] = []
        self._buffers: list[np.ndarray | None] = []
        for layer in layers:
            self.append(layer)

    def append(self, layer: BaseLayer) -> None:
        if self._layers and layer.prev != self._layers[-1].n:
            last = self._layers[-1]
            raise ValueError(
                f"layer {layer.name!r} has prev={layer.prev}, "
                f"which does not match layer {last.name!r} n={last.n}"
            )
        if layer.name and layer.name in self.names:
            raise ValueError(f"layer name {layer.name!r} is used twice")
        self._layers.append(layer)
        self._buffers.append(None)

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self._layers]

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[BaseLayer]:
        return iter(self._layers)

    def __getitem__(self, key: int | str) -> BaseLayer:
        if isinstance(key, str):
            try:
                return self._layers[self.names.index(key)]
            except ValueError:
                raise KeyError(f"no layer named {key!r}; layers: {', '.join(self.names)}") from None
        return self._layers[key]

    def params(self) -> dict[str, np.ndarray]:
        """``{"w0": ..., "b0": ..., "w1": ...}`` by layer index, in stack order."""
        out: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self._layers):
            out[f"w{i}"] = layer.w
            out[f"b{i}"] = layer.b
        return out

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self._layers)

    def _buffer(self, i: int, rows: int) -> np.ndarray:
        layer = self._layers[i]
        buf = self._buffers[i]
        if buf is None or buf.shape[0] < rows:
            buf = self._buffers[i] = np.empty((rows, layer.n), dtype=layer.dtype)
        return buf[:rows]

    def forward(
        self, x: np.ndarray, *, keep_u: bool = False, observe: Observer | None = None
    ) -> np.ndarray:
        """Applies every layer in turn to ``x`` of shape ``(rows, prev)``.

        Args:
            x: the input batch.
            keep_u: keep each layer's pre-activation ``u`` intact for ``observe`` (costs one
                array per layer); otherwise the activation overwrites ``u`` in place.
            observe: called as ``observe(i, u, y)`` after layer ``i``.

        Returns:
            The last layer's output, shape ``(rows, n_last)``, in a reused buffer.
        """
        rows = x.shape[0]
        with blas_single_threaded():  # once for the stack, not per layer
            for i, layer in enumerate(self._layers):
                if keep_u:
                    u = layer.linear(x, out=self._buffer(i, rows))
                    y = layer.act(u)
                else:
                    u = None
                    y = layer.forward(x, out=self._buffer(i, rows))
                if observe is not None:
                    observe(i, u, y)
                x = y
        return x

    __call__ = forward

    def __repr__(self) -> str:
        body = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self._layers))
        return f"LayerManager({body}\n)"
