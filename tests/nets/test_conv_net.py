"""ConvNet, Glow's coupling conditioner and split prior."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.nets import ConvNet


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


@pytest.mark.parametrize("compiled", [False, True])
def test_empty_batch_gives_empty_output(compiled):
    # oneDNN's Conv2D (on by default on AVX-512 CPUs) returns an empty input unchanged, which
    # made the next convolution fail on its channel count; the suite runs with oneDNN on and
    # off (Makefile), so this holds under both.
    net = ConvNet(6, hidden_channels=8, num_hidden=2, context_size=2)
    call = tf.function(net, input_signature=[tf.TensorSpec([None, 4, 4, 3]),
                                             tf.TensorSpec([None, 2])]) if compiled else net
    assert tuple(call(tf.zeros([0, 4, 4, 3]), tf.zeros([0, 2])).shape) == (0, 4, 4, 6)
    x = np.random.default_rng(1).normal(size=(3, 4, 4, 3)).astype("float32")
    assert tuple(call(x, tf.ones([3, 2])).shape) == (3, 4, 4, 6)
