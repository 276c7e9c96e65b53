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


CASES = [  # (mask, batch_shape, event_shape)
    ("channel", (2, 3), (5,)),
    ("channel", (3,), (2, 2, 3)),
    ("checkerboard", (2,), (3, 4, 2)),
]


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


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize(("mask", "batch_shape", "event_shape"), CASES,
                         ids=["channel-vector", "channel-image", "checkerboard"])
@pytest.mark.parametrize("kind", sorted(COUPLINGS))
def test_conditioning_part_passes_through(kind, mask, batch_shape, event_shape, parity, checks):
    cls, params, _, _ = COUPLINGS[kind]
    conditioner = checks.coupling_conditioner(mask, parity, event_shape, params, tf.float32,
                                              seed=4)
    bijector = cls(conditioner, mask=mask, parity=parity, event_ndims=len(event_shape))
    checks.conditioning_part_unchanged(bijector, _data(batch_shape + event_shape, 5), mask,
                                       parity)


@pytest.mark.parametrize(("mask", "event_shape", "width"), [
    ("channel", (2,), 4),               # 1 shift needed (an additive coupling on 2-d data)
    ("channel", (4, 4, 2), 3),
    ("checkerboard", (4, 4, 2), 4),      # 2 shifts needed per position
])
def test_a_conditioner_of_the_wrong_width_is_refused(mask, event_shape, width):
    def net(x):
        return tf.zeros([*x.shape[:-1], width])

    bijector = AdditiveCoupling(net, mask=mask, event_ndims=len(event_shape))
    for method in (bijector.forward, bijector.inverse):
        with pytest.raises(ValueError, match=f"conditioner returned {width} values"):
            method(tf.zeros([5, *event_shape]))
