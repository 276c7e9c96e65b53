"""ShiftAndScale: per-example affine parameters broadcast over each event."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.bijectors import ShiftAndScale

CASES = [  # (parameter shape, data shape, event_ndims)
    ((3, 1, 1, 2), (3, 4, 5, 2), 3),   # per-example, per-channel on images
    ((1, 1, 1, 2), (3, 4, 5, 2), 3),   # one context for the whole batch
    ((3, 4), (3, 4), 1),               # per-example vectors
]


@pytest.mark.parametrize(("param_shape", "shape", "event_ndims"), CASES)
def test_round_trips_and_log_dets(param_shape, shape, event_ndims, dtype, tol, checks):
    rng = np.random.default_rng(0)
    loc = tf.constant(rng.normal(size=param_shape), dtype)
    log_scale = tf.constant(rng.normal(scale=0.5, size=param_shape), dtype)
    bijector = ShiftAndScale(loc, log_scale, event_ndims=event_ndims)
    z = tf.constant(rng.normal(size=shape), dtype)
    x = tf.constant(rng.normal(size=shape), dtype)
    checks.bijector_properties(bijector, z, x, event_ndims, tol)


def test_log_det_counts_every_position():
    log_scale = tf.constant([[[[0.5, -1.0]]], [[[1.0, 2.0]]]])
    bijector = ShiftAndScale(tf.zeros_like(log_scale), log_scale, event_ndims=3)
    fldj = bijector.forward_log_det_jacobian(tf.zeros([2, 3, 4, 2]), event_ndims=3)
    np.testing.assert_allclose(fldj, [12 * -0.5, 12 * 3.0])


@pytest.mark.parametrize(("param_shape", "shape"), [
    ((1, 1, 1, 2), (4, 5, 2)),         # one set of parameters, one unbatched event
    ((1, 1, 1, 2), (2, 3, 4, 5, 2)),   # and sample shape (2, 3)
    ((3, 1, 1, 2), (2, 3, 4, 5, 2)),   # per example, under a sample axis
])
def test_output_keeps_the_input_shape_and_batch_shape_is_empty(param_shape, shape):
    rng = np.random.default_rng(0)
    params = [tf.constant(rng.normal(size=param_shape), tf.float32) for _ in range(2)]
    bijector = ShiftAndScale(*params, event_ndims=3)
    z = tf.constant(rng.normal(size=shape), tf.float32)
    assert bijector.experimental_batch_shape() == []
    assert bijector.forward(z).shape == shape
    assert bijector.inverse(z).shape == shape
    assert bijector.forward_log_det_jacobian(z, event_ndims=3).shape == shape[:-3]
    np.testing.assert_allclose(bijector.inverse(bijector.forward(z)), z, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("param_shape", "shape"), [
    ((3, 1, 1, 2), (4, 5, 2)),         # 3 examples' parameters for one event
    ((3, 1, 1, 2), (2, 4, 5, 2)),      # for 2 events
    ((2, 3, 1, 1, 2), (3, 4, 5, 2)),   # more batch axes than the input
])
def test_parameters_that_would_change_the_input_shape_are_refused(param_shape, shape):
    bijector = ShiftAndScale(tf.zeros(param_shape), tf.zeros(param_shape), event_ndims=3)
    for method in (bijector.forward, bijector.inverse):
        with pytest.raises(ValueError, match="do not broadcast to the batch shape"):
            method(tf.zeros(shape))
