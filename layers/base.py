"""Fully connected layers of the seed tutorial: ``y = act(x @ w + b)``."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from layers.activations import get_act
from layers.blocks import block_rows, for_each_block
from layers.registry import register_layer

DTYPES = ("float32", "float64")


class BaseLayer:
    """One fully connected layer, batch-major.

    Forward: ``u = x @ w + b``, ``y = act(u)``.

    Initial parameters: ``w = wb_width * N(0, 1)`` of shape ``(prev, n)`` and
    ``b = wb_width * N(0, 1)`` of shape ``(n,)``, drawn in float64 from ``rng`` (``w`` first) and
    then cast to ``dtype``. Drawing in float64 keeps sweep points comparable: with the same
    generator state, ``w`` for two values of ``wb_width`` differ exactly by their ratio.

    Shape:
        x: ``(rows, prev)`` -> y: ``(rows, n)``.

    Args:
        prev: number of inputs (the previous layer's ``n``).
        n: number of units (outputs).
        act: activation name, looked up with ``get_act(act, **act_dic)``.
        act_dic: the activation's parameters.
        wb_width: scale of the initial weights and biases.
        name: the layer's name in summaries and artifacts.
        rng: the generator the initial parameters are drawn from.
        dtype: ``"float32"`` or ``"float64"``, for parameters and activations.
        keep_input: keep a copy of the last input as ``self.x``, as the seed does for
            backpropagation. Off by default: a forward-only run needs no copy.
    """

    kind = "base"

    def __init__(
        self,
        *,
        prev: int,
        n: int,
        act: str = "ReLU",
        act_dic: Mapping[str, Any] | None = None,
        wb_width: float = 5e-2,
        name: str = "",
        rng: np.random.Generator | None = None,
        dtype: str = "float64",
        keep_input: bool = False,
    ) -> None:
        for key, value in (("prev", prev), ("n", n)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{key}={value!r}: expected a positive int")
        if isinstance(wb_width, bool) or not isinstance(wb_width, (int, float)) or not (
            math.isfinite(wb_width) and wb_width > 0
        ):
            raise ValueError(f"wb_width={wb_width!r}: expected a finite positive number")
        if str(dtype) not in DTYPES:
            raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(DTYPES)}")
        self.prev = int(prev)
        self.n = int(n)
        self.name = name
        self.wb_width = float(wb_width)
        self.dtype = np.dtype(str(dtype))
        self.keep_input = keep_input
        self.act = get_act(act, **dict(act_dic or {}))
        self.x: np.ndarray | None = None
        self.reset_parameters(rng if rng is not None else np.random.default_rng())

    def reset_parameters(self, rng: np.random.Generator) -> None:
        """Draws ``w`` then ``b`` from ``rng``, scaled by ``wb_width``."""
        self.w = (self.wb_width * rng.standard_normal((self.prev, self.n))).astype(self.dtype)
        self.b = (self.wb_width * rng.standard_normal(self.n)).astype(self.dtype)

    @property
    def num_params(self) -> int:
        return self.w.size + self.b.size

    def linear(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``u = x @ w + b``, written into ``out`` when given (shape ``(rows, n)``)."""
        return self._blocks(x, out, activate=False)

    def forward(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``y = act(x @ w + b)``; with ``out``, ``u`` and then ``y`` are computed in it."""
        return self._blocks(x, out, activate=True)

    def forward_block(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out = act(x @ w + b)`` for the rows of one of the layer's row blocks.

        The activation adds the bias itself: with a compiled loop, + b and act are one pass.
        ``LayerManager`` runs consecutive layers block by block through this method.
        """
        np.matmul(x, self.w, out=out)
        self.act(out, out=out, bias=self.b)
        return out

    def _blocks(self, x: np.ndarray, out: np.ndarray | None, *, activate: bool) -> np.ndarray:
        # Row blocks of a fixed size make the result independent of the thread count (see
        # layers.blocks); each block is multiplied, shifted and activated while it is in cache.
        if self.keep_input:
            self.x = x.copy()
        u = np.empty((x.shape[0], self.n), dtype=self.dtype) if out is None else out

        def work(start: int, stop: int) -> None:
            block = u[start:stop]
            if activate:
                self.forward_block(x[start:stop], block)
            else:
                np.matmul(x[start:stop], self.w, out=block)
                block += self.b

        for_each_block(x.shape[0], block_rows(self.n), work)
        return u

    __call__ = forward

    def extra_repr(self) -> str:
        return f"prev={self.prev}, n={self.n}, act={self.act!r}, wb_width={self.wb_width:g}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.extra_repr()})"


@register_layer
class MiddleLayer(BaseLayer):
    """A hidden layer. Forward is the same as the output layer's, as in the seed."""

    kind = "middle"


@register_layer
class OutputLayer(BaseLayer):
    """The last layer of a stack. Forward is the same as a hidden layer's, as in the seed."""

    kind = "output"
