"""MLP, the coupling conditioner on vectors."""

import keras
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


def test_config_round_trip():
    net = MLP(4, hidden_units=(8, 6), activation="tanh", name="conditioner")
    x = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
    net(x)
    rng = np.random.default_rng(2)
    for weight in net.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype(weight.dtype))
    for clone in (MLP.from_config(net.get_config()),
                  keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))):
        assert isinstance(clone, MLP)
        assert clone.get_config() == net.get_config()
        clone(x)
        clone.set_weights(net.get_weights())
        np.testing.assert_allclose(clone(x), net(x), rtol=1e-6)


def test_build_creates_every_weight():
    # Keras builds deserialised layers with `build(input_shape)`, before any call.
    net = MLP(4, hidden_units=(8, 6))
    net.build((None, 3))
    assert len(net.weights) == 6
    net(tf.zeros([1, 3]))
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))
    assert [w.shape for w in clone.weights] == [w.shape for w in net.weights]
