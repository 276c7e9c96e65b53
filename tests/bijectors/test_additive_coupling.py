"""AdditiveCoupling (NICE) with channel and checkerboard masks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.bijectors import AdditiveCoupling
from tfp_flows.nets import MLP

CASES = [  # (mask, batch_shape, event_shape)
    ("channel", (2, 3), (5,)),
    ("channel", (3,), (2, 2, 3)),
    ("checkerboard", (2,), (3, 4, 2)),
]
CASE_IDS = ["channel-vector", "channel-image", "checkerboard"]


def _coupling(conditioner, mask, parity, event_shape):
    return AdditiveCoupling(conditioner, mask=mask, parity=parity, event_ndims=len(event_shape))


def _data(shape, seed, dtype):
    return tf.constant(np.random.default_rng(seed).normal(size=shape), dtype)


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize(("mask", "batch_shape", "event_shape"), CASES, ids=CASE_IDS)
def test_round_trips_and_log_dets(mask, batch_shape, event_shape, parity, dtype, tol, checks):
    conditioner = checks.coupling_conditioner(mask, parity, event_shape, 1, dtype, seed=parity)
    bijector = _coupling(conditioner, mask, parity, event_shape)
    shape = batch_shape + event_shape
    checks.bijector_properties(bijector, _data(shape, 1, dtype), _data(shape, 2, dtype),
                               len(event_shape), tol)
    np.testing.assert_array_equal(
        bijector.inverse_log_det_jacobian(_data(shape, 3, dtype), event_ndims=len(event_shape)),
        0.0)


def test_shift_is_the_conditioner_output():
    conditioner = lambda a: tf.concat([a * 2.0, a[..., :1] + 1.0], axis=-1)  # noqa: E731
    bijector = AdditiveCoupling(conditioner, mask="channel", parity=0)
    x = tf.constant([[1.0, 2.0, 3.0, 4.0, 5.0]])
    np.testing.assert_allclose(bijector.inverse(x), [[1.0, 2.0, 1.0, 0.0, 3.0]])


def test_conditioner_runs_once_per_log_prob(checks):
    net = MLP(2, hidden_units=(8,))
    net(tf.zeros([1, 2]))
    checks.randomize_weights(net, seed=9)
    checks.conditioner_runs_once_per_log_prob(
        lambda conditioner: AdditiveCoupling(conditioner, mask="channel", parity=0),
        net, _data((3, 4), 10, tf.float32), 1)


def test_channel_mask_needs_two_channels():
    bijector = AdditiveCoupling(lambda a: a, mask="channel", event_ndims=3)
    with pytest.raises(ValueError, match="at least 2"):
        bijector.inverse(tf.zeros([1, 2, 2, 1]))


@pytest.mark.parametrize("kwargs", [
    {"mask": "stripes"},
    {"mask": "checkerboard", "event_ndims": 1},
    {"parity": 2},
], ids=["unknown-mask", "checkerboard-on-vectors", "bad-parity"])
def test_constructor_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        AdditiveCoupling(keras.layers.Identity(), **kwargs)
