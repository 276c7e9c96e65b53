"""What both couplings share: real Keras conditioners, eagerly, in tf.function and under XLA."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.bijectors import AdditiveCoupling, AffineCoupling
from tfp_flows.nets import ConvNet

# (bijector class, conditioner outputs per transformed channel, parity, mask compiled by XLA);
# one XLA compile per class keeps the suite fast.
COUPLINGS = {
    "additive": (AdditiveCoupling, 1, 1, "channel"),
    "affine": (AffineCoupling, 2, 0, "checkerboard"),
}


def _data(shape, seed):
    return tf.constant(np.random.default_rng(seed).normal(size=shape), tf.float32)


@pytest.mark.parametrize("mask", ["channel", "checkerboard"])
@pytest.mark.parametrize("kind", sorted(COUPLINGS))
def test_keras_conditioner_eager_graph_and_xla(kind, mask, checks):
    # The real conditioners, with random weights in place of the zero-initialised last layer.
    cls, params, parity, xla_mask = COUPLINGS[kind]
    event_shape = (4, 4, 2)
    channels = 1 if mask == "channel" else 2
    net = ConvNet(params * channels, hidden_channels=8)
    net(tf.zeros([1, 4, 4, channels]))
    checks.randomize_weights(net, seed=6)
    bijector = cls(net, mask=mask, parity=parity, event_ndims=3)
    z, x = _data((2, *event_shape), 7), _data((2, *event_shape), 8)
    checks.conditioning_part_unchanged(bijector, x, mask, parity)
    checks.bijector_properties(bijector, z, x, 3, {"rtol": 1e-4, "atol": 1e-4})
    checks.same_eager_graph_xla(bijector, z, x, 3, {"rtol": 1e-5, "atol": 1e-5},
                                xla=mask == xla_mask)
