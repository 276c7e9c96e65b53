"""The shape shared by the coupling conditioners: hidden layers, then a zero-initialised output."""

from __future__ import annotations

import keras

__all__ = ["ZeroInitStack"]


class ZeroInitStack(keras.layers.Layer):
    """Applies `self.hidden` in order, then `self.out`, whose weights start at zero.

    Subclasses create the layers in `__init__`. The zero output layer makes every coupling
    start as the identity, which Glow found essential for training deep flows.
    """

    hidden: list
    out: keras.layers.Layer

    def build(self, input_shape):
        # Without this, Keras' `build`/`build_from_config` marks the layer built with no weights.
        for layer in self.hidden:
            layer.build(input_shape)
            input_shape = layer.compute_output_shape(input_shape)
        self.out.build(input_shape)

    def call(self, x):
        for layer in self.hidden:
            x = layer(x)
        return self.out(x)
