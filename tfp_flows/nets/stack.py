"""The shape shared by the coupling conditioners: hidden layers, then a zero-initialised output."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfp_flows.nets.batch import on_one_batch_axis

__all__ = ["ZeroInitStack", "broadcast_context", "stacked_row"]


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


def stacked_row(variable, index: int):
    """Row `index` of a stacked variable, read alone: one gather from the variable's buffer,
    whose gradient is a `tf.IndexedSlices` of that row."""
    return tf.gather(getattr(variable, "value", variable), index)


def _per_copy(initializer, copies: int | None):
    """`initializer` drawn independently for each copy of a stacked weight."""
    if copies is None:
        return initializer

    def initialize(shape, dtype=None):
        return keras.ops.stack([initializer(shape[1:], dtype) for _ in range(copies)])

    return initialize


class ZeroInitStack(keras.layers.Layer):
    """Hidden layers with an activation, then an output layer whose weights start at zero.

    Subclasses set `event_rank` (1 for vectors, 3 for images), `output_name`, and define
    `hidden_sizes`, `output_size`, `kernel_shape(index, fan_in, fan_out)` and
    `linear(x, kernel)`; every layer is `activation(linear(x, kernel) + bias)`, the output
    layer without the activation. The zero output layer makes every coupling start as the
    identity, which Glow found essential for training deep flows.

    With `context_size > 0` the layer is called as `layer(x, context)` and the context,
    broadcast over the positions, is concatenated to the input on the last axis: the
    conditioning of the published conditional flows.

    With `copies=K` the layer holds K independent networks whose weights are stacked on a
    leading axis: one variable per kind of weight for all K, so an optimizer updates a few
    large variables instead of many small ones. Copy k is `layer(x, context, copy=k)`; its
    weights are read as rows of the stacked variables on each call.
    """

    event_rank: int
    output_name: str
    activation = "relu"

    def __init__(self, context_size: int = 0, copies: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 0:
            raise ValueError(f"context_size must be an integer >= 0, got {context_size!r}.")
        if copies is not None and (isinstance(copies, bool) or not isinstance(copies, int)
                                   or copies < 1):
            raise ValueError(f"copies must be None or an integer >= 1, got {copies!r}.")
        self.context_size = context_size
        self.copies = copies

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """The widths of the hidden layers."""
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        """The width of the last layer."""
        raise NotImplementedError

    def kernel_shape(self, index: int, fan_in: int, fan_out: int) -> tuple[int, ...]:
        """The shape of layer `index`'s kernel from `fan_in` to `fan_out` features."""
        raise NotImplementedError

    def linear(self, x, kernel):
        """`x` through one layer's `kernel` (a matmul, or a convolution)."""
        raise NotImplementedError

    def build(self, input_shape):
        fan_in = input_shape[-1] + self.context_size
        sizes = [*self.hidden_sizes, self.output_size]
        stack = () if self.copies is None else (self.copies,)
        self.kernels, self.biases = [], []
        for index, fan_out in enumerate(sizes):
            last = index == len(sizes) - 1
            name = self.output_name if last else f"hidden_{index}"
            initializer = ("zeros" if last else
                           _per_copy(keras.initializers.GlorotUniform(), self.copies))
            self.kernels.append(self.add_weight(
                shape=(*stack, *self.kernel_shape(index, fan_in, fan_out)),
                initializer=initializer, name=f"{name}_kernel"))
            self.biases.append(self.add_weight(shape=(*stack, fan_out), initializer="zeros",
                                               name=f"{name}_bias"))
            fan_in = fan_out

    def call(self, x, context=None, copy=None):
        if (context is None) != (self.context_size == 0):
            raise ValueError(f"{self.name} takes a context of size {self.context_size}; "
                             f"got {'none' if context is None else 'one'}.")
        if (copy is None) != (self.copies is None):
            raise ValueError(f"{self.name} holds {self.copies or 'no'} stacked copies; got "
                             f"copy={copy!r}.")
        if copy is not None and (isinstance(copy, bool) or not isinstance(copy, int)
                                 or not 0 <= copy < self.copies):
            raise ValueError(f"{self.name} holds copies 0 to {self.copies - 1}; got copy={copy!r}.")
        return on_one_batch_axis(lambda x, context: self._batch_call(x, context, copy), x,
                                 context, self.event_rank, self.name)

    def _batch_call(self, x, context, copy):
        """The network on inputs with one batch axis."""
        if context is not None:
            x = keras.ops.concatenate([x, broadcast_context(context, x, self.event_rank)], -1)
        # With oneDNN (TF's default on AVX-512 CPUs) a Conv2D of an empty batch returns its input
        # unchanged, so the next layer sees the wrong channel count. An empty batch runs on one
        # zero row instead and none is returned. For any other batch the pad and the slice are
        # no-ops that forward their input.
        rows = tf.shape(x)[0]
        x = tf.pad(x, [[0, tf.maximum(1 - rows, 0)]] + [[0, 0]] * self.event_rank)
        activation = keras.activations.get(self.activation)
        last = len(self.kernels) - 1
        for index, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            if copy is not None:
                kernel, bias = stacked_row(kernel, copy), stacked_row(bias, copy)
            x = tf.nn.bias_add(self.linear(x, kernel), bias)
            if index < last:
                x = activation(x)
        return x[:rows]

    def get_config(self):
        return {**super().get_config(), "context_size": self.context_size, "copies": self.copies}
