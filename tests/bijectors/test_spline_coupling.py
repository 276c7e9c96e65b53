"""Coupling with the rational-quadratic spline transform, and the transforms' contracts."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import transforms
from tfp_flows.bijectors import Coupling
from tfp_flows.transforms import AdditiveTransform, AffineTransform, SplineTransform

CASES = [  # (mask, batch_shape, event_shape)
    ("channel", (2, 3), (5,)),
    ("channel", (3,), (2, 2, 3)),
    ("checkerboard", (2,), (3, 4, 2)),
]
CASE_IDS = ["channel-vector", "channel-image", "checkerboard"]
BOUND = 1.5


def _data(shape, seed, dtype):
    # Spread 2: about a third of the entries fall outside [-1.5, 1.5], on the linear tails.
    return tf.constant(2.0 * np.random.default_rng(seed).normal(size=shape), dtype)


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize(("mask", "batch_shape", "event_shape"), CASES, ids=CASE_IDS)
def test_round_trips_and_log_dets_off_the_identity(mask, batch_shape, event_shape, parity,
                                                   dtype, tol, checks):
    transform = SplineTransform(bins=4, bound=BOUND)
    conditioner = checks.coupling_conditioner(mask, parity, event_shape,
                                              transform.params_per_entry, dtype, seed=parity)
    bijector = Coupling(conditioner, transform, mask=mask, parity=parity,
                        event_ndims=len(event_shape))
    shape = batch_shape + event_shape
    z, x = _data(shape, 1, dtype), _data(shape, 2, dtype)
    assert np.any(np.abs(x.numpy()) > BOUND) and np.any(np.abs(x.numpy()) < BOUND)
    checks.bijector_properties(bijector, z, x, len(event_shape), tol)
    # Inside the bound every transformed entry moves (outside it the tails are the identity).
    checks.conditioning_part_unchanged(bijector, tf.clip_by_value(x, -1.4, 1.4), mask, parity)


def test_same_eager_graph_and_xla(checks):
    transform = SplineTransform(bins=5, bound=BOUND)
    conditioner = checks.coupling_conditioner("channel", 0, (6,), transform.params_per_entry,
                                              tf.float32, seed=3)
    bijector = Coupling(conditioner, transform, mask="channel", event_ndims=1)
    checks.same_eager_graph_xla(bijector, _data((4, 6), 1, tf.float32),
                                _data((4, 6), 2, tf.float32), 1, {"rtol": 1e-5, "atol": 1e-5})


def test_conditioner_runs_once_per_log_prob(checks):
    transform = SplineTransform(bins=3)
    conditioner = checks.coupling_conditioner("channel", 1, (4,), transform.params_per_entry,
                                              tf.float32, seed=0)
    checks.conditioner_runs_once_per_log_prob(
        lambda net: Coupling(net, transform, mask="channel", parity=1, event_ndims=1),
        conditioner, _data((3, 4), 0, tf.float32), 1)


@pytest.mark.parametrize("transform", [AffineTransform("sigmoid"), AffineTransform("tanh"),
                                       AdditiveTransform(), SplineTransform(bins=6, bound=2.0)],
                         ids=repr)
def test_transform_round_trip_and_elementwise_log_det(transform):
    """g^-1(g(x)) = x, and the elementwise log-det is log|dg/dx| from autodiff."""
    rng = np.random.default_rng(5)
    x = tf.constant(2.0 * rng.normal(size=(7, 3)), tf.float64)
    params = tf.constant(rng.normal(size=(7, 3 * transform.params_per_entry)), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z, log_det = transform(x, params, inverse=True)
    derivative = tape.gradient(z, x)  # elementwise maps: the Jacobian is diagonal
    back, back_log_det = transform(z, params, inverse=False)
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)
    if transform.volume_preserving:
        assert log_det is None and back_log_det is None
        np.testing.assert_allclose(derivative, 1.0)
        return
    np.testing.assert_allclose(log_det, np.log(np.abs(derivative)), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(back_log_det, -log_det, rtol=1e-9, atol=1e-9)


def test_spline_is_the_identity_at_zero_parameters():
    transform = SplineTransform(bins=8, bound=3.0)
    x = tf.constant(np.linspace(-5.0, 5.0, 41)[:, None], tf.float32)
    z, log_det = transform(x, tf.zeros([41, transform.params_per_entry]), inverse=True)
    np.testing.assert_allclose(z, x, atol=1e-5)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-5)


def test_spline_needs_three_bins_minus_one_parameters_per_entry():
    assert SplineTransform(bins=8).params_per_entry == 23
    assert AffineTransform().params_per_entry == 2
    assert AdditiveTransform().params_per_entry == 1


@pytest.mark.parametrize("make, message", [
    (lambda: SplineTransform(bins=1), "bins must be an integer >= 2"),
    (lambda: SplineTransform(bins=4.0), "bins must be an integer >= 2"),
    (lambda: SplineTransform(bound=0.0), "bound must be a positive finite number"),
    (lambda: SplineTransform(bound=float("inf")), "bound must be a positive finite number"),
    (lambda: AffineTransform("softplus"), "scale_fn must be one of"),
    (lambda: transforms.get("quadratic"), "unknown transform 'quadratic'"),
    (lambda: Coupling(lambda x: x, "affine", event_ndims=1), "must be a tfp_flows"),
    (lambda: Coupling(lambda x: x, AdditiveTransform(), event_ndims=2), "event_ndims must be"),
])
def test_bad_arguments_are_refused(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()
