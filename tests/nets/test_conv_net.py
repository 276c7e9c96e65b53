"""ConvNet, Glow's coupling conditioner and split prior."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.nets import ConvNet, PointwiseConv2D


@pytest.mark.parametrize("num_hidden", [0, 1, 2])
def test_output_shape_and_layers(num_hidden):
    net = ConvNet(6, hidden_channels=8, num_hidden=num_hidden)
    assert net(tf.zeros([2, 4, 4, 3])).shape == [2, 4, 4, 6]
    # Glow: the first hidden convolution is 3x3, later ones 1x1, the output 3x3.
    kernels = [w.shape for w in net.weights if len(w.shape) == 4]
    expected = [(3 if i == 0 else 1, 3 if i == 0 else 1, 3 if i == 0 else 8, 8)
                for i in range(num_hidden)]
    expected.append((3, 3, 8 if num_hidden else 3, 6))
    assert [tuple(k) for k in kernels] == expected


def test_output_is_zero_at_initialisation():
    net = ConvNet(4, hidden_channels=8)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 2)).astype("float32")
    np.testing.assert_array_equal(net(x), np.zeros([2, 4, 4, 4]))


def test_pointwise_conv_is_a_1x1_convolution():
    """Same weights as Conv2D(filters, 1): same outputs and gradients, and a config round trip."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 5, 4, 6)).astype("float32"))
    conv = keras.layers.Conv2D(7, 1, activation="relu")
    pointwise = PointwiseConv2D(7, activation="relu")
    conv.build(x.shape)
    pointwise.build(x.shape)
    pointwise.set_weights([rng.normal(size=w.shape).astype("float32") for w in conv.weights])
    conv.set_weights(pointwise.get_weights())
    results = []
    for layer in (conv, pointwise):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.range(7, dtype=tf.float32))
        results.append([y, *tape.gradient(loss, [x, *layer.trainable_variables])])
    for expected, got in zip(*results, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert float(tf.reduce_max(tf.abs(results[0][0]))) > 0  # not all clipped by the ReLU
    clone = PointwiseConv2D.from_config(pointwise.get_config())
    assert clone.kernel_size == (1, 1) and clone.filters == 7
