"""Scaling, NICE's diagonal scaling layer."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.bijectors import Scaling


def _scaling(event_shape, dtype, seed=0):
    log_scale = np.random.default_rng(seed).normal(scale=0.5, size=event_shape)
    return Scaling(tf.Variable(log_scale, dtype=dtype))


@pytest.mark.parametrize(("batch_shape", "event_shape"), [
    ((4,), (5,)),
    ((2, 3), (3,)),
    ((2, 3), (2, 2, 2)),
])
def test_round_trips_and_log_dets(batch_shape, event_shape, dtype, tol, checks):
    bijector = _scaling(event_shape, dtype)
    rng = np.random.default_rng(1)
    shape = batch_shape + event_shape
    checks.bijector_properties(bijector, tf.constant(rng.normal(size=shape), dtype),
                               tf.constant(rng.normal(size=shape), dtype), len(event_shape), tol)


def test_log_det_is_sum_of_log_scale(dtype, tol):
    bijector = _scaling((2, 3), dtype)
    x = tf.ones([4, 2, 3], dtype)
    expected = np.sum(bijector.log_scale.numpy())
    np.testing.assert_allclose(
        tf.broadcast_to(bijector.forward_log_det_jacobian(x, event_ndims=2), [4]), expected,
        **tol)
    np.testing.assert_allclose(
        tf.broadcast_to(bijector.inverse_log_det_jacobian(x, event_ndims=2), [4]), -expected,
        **tol)
    np.testing.assert_allclose(bijector.forward(x), np.broadcast_to(
        np.exp(bijector.log_scale.numpy()), [4, 2, 3]), **tol)


def test_same_eager_graph_and_xla(checks):
    bijector = _scaling((4,), tf.float32)
    rng = np.random.default_rng(2)
    z, x = (tf.constant(rng.normal(size=(3, 4)), tf.float32) for _ in range(2))
    checks.same_eager_graph_xla(bijector, z, x, 1, {"rtol": 1e-6, "atol": 1e-6})
