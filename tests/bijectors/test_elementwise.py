"""Elementwise: any transform with fixed parameters as a scalar TFP bijector."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.bijectors import Elementwise
from tfp_flows.transforms import AdditiveTransform, AffineTransform, SplineTransform

TRANSFORMS = [AffineTransform("soft_clamp"), AffineTransform("exp").autoregressive(),
              AdditiveTransform(), SplineTransform(bins=4, bound=1.5)]


@pytest.mark.parametrize("transform", TRANSFORMS, ids=repr)
def test_round_trips_and_log_dets_off_the_identity(transform, dtype, tol, checks):
    rng = np.random.default_rng(0)
    params = tf.constant(rng.normal(size=(2, 3, 5 * transform.params_per_entry)), dtype)
    bijector = Elementwise(transform, params)
    z, x = (tf.constant(2.0 * rng.normal(size=(2, 3, 5)), dtype) for _ in range(2))
    checks.bijector_properties(bijector, z, x, 1, tol)
    assert bijector.is_constant_jacobian == transform.volume_preserving


def test_the_transform_runs_once_per_log_prob():
    calls = []

    class Counting(AffineTransform):
        def __call__(self, x, params, inverse):
            calls.append(inverse)
            return super().__call__(x, params, inverse)

    bijector = Elementwise(Counting("tanh"), tf.ones([3, 8]))
    x = tf.ones([3, 4])
    bijector.inverse(x)
    bijector.inverse_log_det_jacobian(x, event_ndims=1)
    assert calls == [True]
