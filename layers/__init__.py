"""NumPy layers of the seed tutorial: activations, fully connected layers, the layer manager.

This package knows nothing of Hydra or of run directories; ``runner`` builds on it.
"""

from layers.activations import get_act, register_activation
from layers.base import BaseLayer, MiddleLayer, OutputLayer
from layers.network import LayerManager
from layers.registry import LAYERS, get_layer, register_layer

__all__ = [
    "LAYERS",
    "BaseLayer",
    "LayerManager",
    "MiddleLayer",
    "OutputLayer",
    "get_act",
    "get_layer",
    "register_activation",
    "register_layer",
]
