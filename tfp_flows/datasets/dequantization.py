"""Uniform dequantization of discrete pixels, in pixel space.

An integer pixel `x` in {0, ..., L-1} becomes `x + u` with `u ~ Uniform[0, 1)`, so values lie
in [0, L) and are *not* divided by L; the models rescale with a bijector so that bits/dim is
exact. The noise is stateless, keyed by the caller, so that every pipeline decides its own
noise from the seed alone.
"""

from __future__ import annotations

import tensorflow as tf

from tfp_flows.dequantizers import add_noise


def dequantize(x: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    """Returns float32 `x + u`, `u ~ Uniform[0, 1)` keyed by `key`, the integer part of `x`
    kept."""
    x = tf.cast(x, tf.float32)
    return add_noise(x, tf.random.stateless_uniform(tf.shape(x), seed=key))
