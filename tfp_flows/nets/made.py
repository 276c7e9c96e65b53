"""MADE, the masked autoencoder that conditions MAF and IAF, as a Keras 3 layer."""

from __future__ import annotations

import keras
import numpy as np

from tfp_flows.nets.batch import on_one_batch_axis

__all__ = ["MADE"]


def _degrees(event_size: int, hidden_units: tuple[int, ...], reverse: bool):
    """Autoregressive degrees of the inputs and of each hidden layer (Germain et al., 2015)."""
    inputs = np.arange(1, event_size + 1)
    if reverse:
        inputs = inputs[::-1]
    hidden = []
    # Hidden degrees cycle through 1..D-1 so every degree is represented in every layer.
    top = max(event_size - 1, 1)
    for units in hidden_units:
        hidden.append(np.arange(units) % top + 1)
    return inputs, hidden


@keras.saving.register_keras_serializable(package="tfp_flows")
class MADE(keras.layers.Layer):
    """Masked Autoencoder for Distribution Estimation.

    Maps x of shape (..., D) to parameters of shape (..., D, params) where output d depends
    only on inputs that come before d in the ordering: the Jacobian of each parameter with
    respect to x is strictly triangular. Used as `shift_and_log_scale_fn` of
    `tfb.MaskedAutoregressiveFlow` (params=2). TFP's `tfb.AutoregressiveNetwork` does the
    same as a tf_keras layer, which Keras 3 models do not track; this one is a Keras 3 layer.

    Args:
        event_size: D.
        hidden_units: widths of the hidden layers (each >= D - 1 for full connectivity).
        params: number of parameters per dimension.
        activation: hidden activation.
        reverse: order the inputs D..1 instead of 1..D.
        context_size: size K of a context vector (0: none). The context enters the first
            hidden layer through an unmasked dense map, so every output may depend on it
            (conditional MADE, as in MAF's conditional density estimation); the layer is then
            called as `made(x, context)`.

    #### References

    [1] Mathieu Germain, Karol Gregor, Iain Murray, Hugo Larochelle. MADE: Masked Autoencoder
        for Distribution Estimation. ICML 2015. https://arxiv.org/abs/1502.03509
    [2] George Papamakarios, Theo Pavlakou, Iain Murray. Masked Autoregressive Flow for
        Density Estimation. NeurIPS 2017. https://arxiv.org/abs/1705.07057
    """

    def __init__(self, event_size: int, hidden_units=(512, 512), params: int = 2,
                 activation: str = "relu", reverse: bool = False, context_size: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(event_size, bool) or not isinstance(event_size, int) or event_size < 1:
            raise ValueError(f"MADE needs an integer event_size >= 1, got {event_size!r}.")
        if isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 0:
            raise ValueError(f"MADE needs an integer context_size >= 0, got {context_size!r}.")
        if context_size and not hidden_units:
            raise ValueError("a conditional MADE (context_size > 0) needs at least one hidden "
                             "layer for the context to enter.")
        self.context_size = context_size
        self.event_size = event_size
        self.hidden_units = tuple(hidden_units)
        self.params = params
        self.activation = keras.activations.get(activation)
        self.activation_name = activation
        self.reverse = reverse
        inputs, hidden = _degrees(event_size, self.hidden_units, reverse)
        degrees = [inputs, *hidden]
        self._masks = [(d_out[None, :] >= d_in[:, None]).astype("float32")
                       for d_in, d_out in zip(degrees[:-1], degrees[1:], strict=True)]
        # The output for dimension d may only see hidden units of degree < d (strict).
        out_degrees = np.repeat(inputs, params)
        self._masks.append((out_degrees[None, :] > degrees[-1][:, None]).astype("float32"))

    def build(self, input_shape):
        """Creates the masked kernels; the last layer starts at zero (the identity flow)."""
        if input_shape[-1] != self.event_size:
            raise ValueError(f"MADE was built for event size {self.event_size}, "
                             f"got inputs of shape {tuple(input_shape)}.")
        sizes = [self.event_size, *self.hidden_units, self.event_size * self.params]
        self.kernels, self.biases = [], []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            last = i == len(sizes) - 2
            self.kernels.append(self.add_weight(
                shape=(fan_in, fan_out), name=f"kernel_{i}",
                initializer="zeros" if last else "glorot_uniform"))
            self.biases.append(self.add_weight(shape=(fan_out,), name=f"bias_{i}",
                                               initializer="zeros"))
        if self.context_size:
            self.context_kernel = self.add_weight(
                shape=(self.context_size, self.hidden_units[0]), name="context_kernel",
                initializer="glorot_uniform")

    def call(self, x, context=None):
        """The autoregressive parameters, shape `(..., event_size, params)`."""
        if (context is None) != (self.context_size == 0):
            raise ValueError(f"{self.name} takes a context of size {self.context_size}; "
                             f"got {'none' if context is None else 'one'}.")
        return on_one_batch_axis(self._batch_call, x, context, 1, self.name)

    def _batch_call(self, x, context):
        """The network on inputs with one batch axis."""
        h = x
        for i, (kernel, bias, mask) in enumerate(
                zip(self.kernels, self.biases, self._masks, strict=True)):
            h = keras.ops.matmul(h, kernel * keras.ops.cast(mask, kernel.dtype)) + bias
            if i == 0 and context is not None:
                h = h + keras.ops.matmul(keras.ops.cast(context, h.dtype), self.context_kernel)
            if i < len(self.kernels) - 1:
                h = self.activation(h)
        # Output columns are (position, param) in natural position order: the masks already
        # carry the ordering, so no permutation is needed.
        return keras.ops.reshape(h, (*keras.ops.shape(h)[:-1], self.event_size, self.params))

    def get_config(self):
        return {**super().get_config(), "event_size": self.event_size,
                "hidden_units": list(self.hidden_units), "params": self.params,
                "activation": self.activation_name, "reverse": self.reverse,
                "context_size": self.context_size}
