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
