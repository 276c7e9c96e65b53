"""What ConvNet and MLP share through ZeroInitStack: building, config and weights round trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.nets import MLP, ConvNet

CASES = {
    "conv_net": (lambda **kw: ConvNet(4, hidden_channels=8, num_hidden=2, **kw), (4, 4, 2)),
    "mlp": (lambda **kw: MLP(4, hidden_units=(8, 6), activation="tanh", **kw), (3,)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_round_trip(case):
    make, shape = CASES[case]
    net = make(name="conditioner")
    x = np.random.default_rng(1).normal(size=(2, *shape)).astype("float32")
    net(x)
    rng = np.random.default_rng(2)
    for weight in net.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype(weight.dtype))
    for clone in (type(net).from_config(net.get_config()),
                  keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))):
        assert isinstance(clone, type(net))
        assert clone.get_config() == net.get_config()
        clone(x)
        clone.set_weights(net.get_weights())
        np.testing.assert_allclose(clone(x), net(x), rtol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_build_creates_every_weight(case):
    # Keras builds deserialised layers with `build(input_shape)`, before any call.
    make, shape = CASES[case]
    net = make()
    net.build((None, *shape))
    assert len(net.weights) == 6
    net(tf.zeros([1, *shape]))
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))
    assert [w.shape for w in clone.weights] == [w.shape for w in net.weights]
