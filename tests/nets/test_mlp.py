"""MLP, the coupling conditioner on vectors."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.nets import MLP


@pytest.mark.parametrize("hidden_units", [(), (8,), (8, 5)])
def test_output_shape_and_layers(hidden_units):
    net = MLP(3, hidden_units=hidden_units)
    assert net(tf.zeros([2, 5, 4])).shape == [2, 5, 3]
    kernels = [tuple(w.shape) for w in net.weights if len(w.shape) == 2]
    sizes = [4, *hidden_units, 3]
    assert kernels == list(zip(sizes[:-1], sizes[1:], strict=True))


def test_output_is_zero_at_initialisation():
    net = MLP(4, hidden_units=(8, 8))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    np.testing.assert_array_equal(net(x), np.zeros([5, 4]))
