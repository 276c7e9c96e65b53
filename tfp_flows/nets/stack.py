"""The shape shared by the coupling conditioners: hidden layers, then a zero-initialised output."""

from __future__ import annotations

import keras

__all__ = ["ZeroInitStack", "broadcast_context"]


def broadcast_context(context, inputs, event_rank: int):
    """`context` (batch..., K) repeated over the event axes of `inputs`, except the last.

    The result has `inputs`' shape with K on the last axis, ready to be concatenated: a vector
    context reaches every position of an image. `context` may have batch size 1 (one context
    for the whole batch) or the batch size of `inputs`.
    """
    ops = keras.ops
    context = ops.cast(context, inputs.dtype)
    for _ in range(event_rank - 1):
        context = ops.expand_dims(context, -2)
    shape = ops.shape(inputs)
    return ops.broadcast_to(context, (*shape[:-1], ops.shape(context)[-1]))


class ZeroInitStack(keras.layers.Layer):
    """Applies `self.hidden` in order, then `self.out`, whose weights start at zero.

    Subclasses create the layers in `__init__` and set `event_rank` (1 for vectors, 3 for
    images). With `context_size > 0` the layer is called as `layer(x, context)` and the
    context, broadcast over the positions, is concatenated to the input on the last axis:
    the conditioning of the published conditional flows. The zero output layer makes every
    coupling start as the identity, which Glow found essential for training deep flows.
    """

    hidden: list
    out: keras.layers.Layer
    event_rank: int

    def __init__(self, context_size: int = 0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 0:
            raise ValueError(f"context_size must be an integer >= 0, got {context_size!r}.")
        self.context_size = context_size

    def build(self, input_shape):
        # Without this, Keras' `build`/`build_from_config` marks the layer built with no weights.
        input_shape = (*input_shape[:-1], input_shape[-1] + self.context_size)
        for layer in self.hidden:
            layer.build(input_shape)
            input_shape = layer.compute_output_shape(input_shape)
        self.out.build(input_shape)

    def call(self, x, context=None):
        if (context is None) != (self.context_size == 0):
            raise ValueError(f"{self.name} takes a context of size {self.context_size}; "
                             f"got {'none' if context is None else 'one'}.")
        if context is not None:
            x = keras.ops.concatenate([x, broadcast_context(context, x, self.event_rank)], -1)
        for layer in self.hidden:
            x = layer(x)
        return self.out(x)

    def get_config(self):
        return {**super().get_config(), "context_size": self.context_size}
