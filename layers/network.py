"""The layer manager: an ordered stack of layers, addressable by index and by name."""

from __future__ import annotations

import itertools
from typing import Callable, Iterator, Sequence

import numpy as np

from layers.base import BaseLayer
from layers.blocks import blas_single_threaded, block_rows, for_each_block

# Called after each layer of a batch as observe(index, u, y); u is None unless keep_u was set.
Observer = Callable[[int, "np.ndarray | None", np.ndarray], None]


def _by_blocks(layer: BaseLayer) -> bool:
    """Whether ``layer`` runs as ``BaseLayer.forward`` does, block by block through
    ``forward_block``, so that it can join a chain (a layer with its own forward runs alone)."""
    return type(layer).forward is BaseLayer.forward


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

        Consecutive layers with the same row block (``layers.blocks.block_rows``) run block by
        block: each block goes through all of them while it is in cache, in one pass of the
        thread pool. Every layer still makes the same calls on the same rows as it would alone,
        so the result is the same, bit for bit.

        Args:
            x: the input batch.
            keep_u: keep each layer's pre-activation ``u`` intact for ``observe`` (costs one
                array per layer); otherwise the activation overwrites ``u`` in place.
            observe: called as ``observe(i, u, y)`` once layer ``i`` is done, in layer order;
                possibly on one of the layers' threads while later layers run.

        Returns:
            The last layer's output, shape ``(rows, n_last)``, in a reused buffer.
        """
        rows = x.shape[0]
        with blas_single_threaded():  # once for the stack, not per layer
            if keep_u or rows == 0:
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
            for chain in self._chains():
                x = self._forward_chain(chain, x, observe)
        return x

    def _chains(self) -> list[list[int]]:
        """The layers' indices in runs of consecutive layers that can go block by block: the
        same row block, and each runs by blocks (``_by_blocks``)."""
        chains: list[list[int]] = []
        last = None
        for i, layer in enumerate(self._layers):
            key = block_rows(layer.n) if _by_blocks(layer) else None
            if key is not None and key == last:
                chains[-1].append(i)
            else:
                chains.append([i])
            last = key
        return chains

    def _forward_chain(self, chain: list[int], x: np.ndarray, observe: Observer | None) -> np.ndarray:
        rows = x.shape[0]
        layers = [self._layers[i] for i in chain]
        outs = [self._buffer(i, rows) for i in chain]
        if not _by_blocks(layers[0]):
            y = layers[0].forward(x, out=outs[0])
            if observe is not None:
                observe(chain[0], None, y)
            return y
        block = block_rows(layers[0].n)
        nblocks = -(-rows // block)
        finished = [itertools.count(1) for _ in chain]  # next() is atomic under the GIL

        def work(start: int, stop: int) -> None:
            h = x[start:stop]
            for k, (layer, out) in enumerate(zip(layers, outs)):
                h = layer.forward_block(h, out[start:stop])
                # The thread that finishes a layer's last block reports the layer before its
                # block goes on to the next layer, so reports come in layer order.
                if observe is not None and next(finished[k]) == nblocks:
                    observe(chain[k], None, out)

        for_each_block(rows, block, work)
        for k, layer in enumerate(layers):  # the seed's copy of each layer's input
            if layer.keep_input:
                layer.x = (x if k == 0 else outs[k - 1]).copy()
        return outs[-1]

    __call__ = forward

    def __repr__(self) -> str:
        body = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self._layers))
        return f"LayerManager({body}\n)"
