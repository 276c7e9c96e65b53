"""A chain of bijectors whose training pass keeps no activations (reversible backprop)."""

from __future__ import annotations

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from tfp_flows.bijectors.one_pass import OnePassBijector

__all__ = ["ReversibleChain"]


def _sum(gradients: list, variable) -> tf.Tensor:
    """The dense sum of a variable's gradients, some of them rows (`tf.IndexedSlices`)."""
    if not gradients:
        return tf.zeros_like(variable)
    rows = [g for g in gradients if isinstance(g, tf.IndexedSlices)]
    dense = [g for g in gradients if not isinstance(g, tf.IndexedSlices)]
    if rows:
        dense.append(tf.convert_to_tensor(tf.IndexedSlices(
            tf.concat([g.values for g in rows], 0), tf.concat([g.indices for g in rows], 0),
            rows[0].dense_shape)))
    return tf.add_n(dense)


class ReversibleChain(OnePassBijector):
    """`tfb.Chain` with memory-saving gradients.

    Composition is the same as `tfb.Chain(bijectors)`: the inverse applies `bijectors[0]`'s
    inverse first. Backpropagating through a deep flow normally stores every layer's
    activations. Here each direction runs under a custom gradient that keeps only its output:
    the backward pass walks the layers from the last applied to the first, rebuilds each
    layer's input from its output with the opposite direction, recomputes that one layer
    under a tape and hands the gradient down. Peak memory is that of one layer, whatever the
    depth; compute is about one extra forward pass per step. Gradients equal ordinary
    backprop up to the float error of the reconstruction (Gomez et al., 2017).

    Every member must be shape-preserving on events of rank `event_ndims`, and exactly
    invertible in floating point up to rounding (true for couplings, ActNorm and 1x1 convs).

    #### References

    [1] Aidan N. Gomez, Mengye Ren, Raquel Urtasun, Roger B. Grosse. The Reversible Residual
        Network: Backpropagation Without Storing Activations. NeurIPS 2017.
        https://arxiv.org/abs/1707.04585
    """

    def __init__(self, bijectors: list[tfb.Bijector], event_ndims: int,
                 validate_args: bool = False, name: str = "reversible_chain"):
        parameters = dict(locals())
        if not bijectors:
            raise ValueError("ReversibleChain needs at least one bijector.")
        self._bijectors = list(bijectors)
        self._event_ndims = event_ndims
        super().__init__(forward_min_event_ndims=event_ndims, validate_args=validate_args,
                         parameters=parameters, name=name)

    @property
    def bijectors(self) -> list[tfb.Bijector]:
        """The chained bijectors, applied last to first in `forward` (as `tfb.Chain`)."""
        return list(self._bijectors)

    def _layer(self, bijector, h, inverse: bool, batch_zeros):
        """One member's output and log-det, the log-det broadcast to the batch shape."""
        if inverse:
            out = bijector.inverse(h)
            log_det = bijector.inverse_log_det_jacobian(h, event_ndims=self._event_ndims)
        else:
            out = bijector.forward(h)
            log_det = bijector.forward_log_det_jacobian(h, event_ndims=self._event_ndims)
        return out, log_det + batch_zeros

    def _transform_and_log_det(self, x, inverse: bool):
        batch_zeros = tf.zeros(tf.shape(x)[:tf.rank(x) - self._event_ndims], x.dtype)
        # Members in the order this direction applies them.
        order = self._bijectors if inverse else self._bijectors[::-1]

        @tf.custom_gradient
        def run(x):
            # A fresh tensor: the members' TFP caches would otherwise hand back outputs of an
            # earlier run on the same x (ildj called before inverse runs twice), computed
            # without reading the variables here, and this gradient would miss them.
            h, total = tf.identity(x), batch_zeros
            for bijector in order:
                h, log_det = self._layer(bijector, h, inverse, batch_zeros)
                total += log_det
            y = h

            def backward(grad_y, grad_log_det, variables=None):
                variables = list(variables or [])
                # Each layer's gradient for each variable; summed once at the end, so that
                # rows of a stacked variable (sparse gradients) are not made dense per layer.
                grad_variables = [[] for _ in variables]
                out, grad_out = y, grad_y
                for bijector in reversed(order):
                    # Rebuild the layer's input from its output; a fresh tensor keeps TFP's
                    # cache from handing back the values of the forward computation.
                    rebuild = bijector.forward if inverse else bijector.inverse
                    # Waiting for the previous layer's gradient keeps the graph executor from
                    # running the rebuilds ahead and holding every layer's activations at once.
                    with tf.control_dependencies([grad_out]):
                        h_in = tf.stop_gradient(rebuild(tf.identity(out)))
                    with tf.GradientTape() as tape:
                        tape.watch(h_in)
                        recomputed, log_det = self._layer(bijector, tf.identity(h_in), inverse,
                                                          batch_zeros)
                    grads = tape.gradient(
                        [recomputed, log_det], [h_in, *variables],
                        output_gradients=[grad_out, grad_log_det])
                    grad_out = grads[0]
                    for total, grad in zip(grad_variables, grads[1:], strict=True):
                        if grad is not None:
                            total.append(grad)
                    out = h_in
                return grad_out, [_sum(grads, v) for grads, v in zip(grad_variables, variables,
                                                                     strict=True)]

            return (y, total), backward

        return run(x)
