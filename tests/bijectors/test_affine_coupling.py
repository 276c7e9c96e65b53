"""AffineCoupling (RealNVP, Glow) over masks, parities and scale functions."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.bijectors import AffineCoupling
from tfp_flows.nets import MLP, ConvNet

CASES = [  # (mask, batch_shape, event_shape)
    ("channel", (2, 3), (5,)),
    ("channel", (3,), (2, 2, 3)),
    ("checkerboard", (2,), (3, 4, 2)),
]
CASE_IDS = ["channel-vector", "channel-image", "checkerboard"]


def _coupling(conditioner, mask, parity, event_shape, scale_fn="sigmoid"):
    return AffineCoupling(conditioner, mask=mask, parity=parity, scale_fn=scale_fn,
                          event_ndims=len(event_shape))


def _data(shape, seed, dtype):
    return tf.constant(np.random.default_rng(seed).normal(size=shape), dtype)


def _check_properties(mask, batch_shape, event_shape, parity, scale_fn, dtype, tol, checks):
    conditioner = checks.coupling_conditioner(mask, parity, event_shape, 2, dtype, seed=parity)
    bijector = _coupling(conditioner, mask, parity, event_shape, scale_fn)
    shape = batch_shape + event_shape
    checks.bijector_properties(bijector, _data(shape, 1, dtype), _data(shape, 2, dtype),
                               len(event_shape), tol)


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize(("mask", "batch_shape", "event_shape"), CASES, ids=CASE_IDS)
def test_round_trips_and_log_dets(mask, batch_shape, event_shape, parity, dtype, tol, checks):
    _check_properties(mask, batch_shape, event_shape, parity, "sigmoid", dtype, tol, checks)


@pytest.mark.parametrize("scale_fn", ["tanh", "exp"])
def test_round_trips_and_log_dets_of_other_scale_fns(scale_fn, dtype, tol, checks):
    # The scale function acts elementwise after the mask, so one mask covers it.
    _check_properties("channel", (3,), (2, 2, 3), 1, scale_fn, dtype, tol, checks)


@pytest.mark.parametrize(("scale_fn", "log_scale"), [
    ("sigmoid", lambda raw: np.log(1e-3 + (1.0 - 1e-3) / (1.0 + np.exp(-(raw + 2.0))))),
    ("tanh", np.tanh),
    ("exp", lambda raw: raw),
])
def test_inverse_is_scale_and_shift(scale_fn, log_scale):
    # The conditioner's first half is the shift and the second the raw scale, per dimension.
    shift, raw = np.array([0.5, -1.0]), np.array([0.3, -0.7])
    conditioner = lambda a: tf.constant(np.concatenate([shift, raw])[None], tf.float64)  # noqa: E731
    bijector = AffineCoupling(conditioner, mask="channel", parity=1, scale_fn=scale_fn,
                              event_ndims=1)
    x = np.array([[2.0, -3.0, 7.0, 1.0]])
    expected = np.concatenate([x[:, :2] * np.exp(log_scale(raw)) + shift, x[:, 2:]], axis=-1)
    np.testing.assert_allclose(bijector.inverse(tf.constant(x)), expected, rtol=1e-12)
    np.testing.assert_allclose(bijector.inverse_log_det_jacobian(tf.constant(x), event_ndims=1),
                               [log_scale(raw).sum()], rtol=1e-12)


@pytest.mark.parametrize("mask", ["channel", "checkerboard"])
def test_conditioner_runs_once_per_log_prob(mask, checks):
    if mask == "channel":
        net, x, event_ndims = MLP(4, hidden_units=(8,)), _data((3, 4), 10, tf.float32), 1
        net(tf.zeros([1, 2]))
    else:
        net, x, event_ndims = ConvNet(2, 8), _data((3, 4, 4, 1), 10, tf.float32), 3
        net(tf.zeros([1, 4, 4, 1]))
    checks.randomize_weights(net, seed=9)
    checks.conditioner_runs_once_per_log_prob(
        lambda conditioner: AffineCoupling(conditioner, mask=mask, event_ndims=event_ndims),
        net, x, event_ndims)


def test_channel_mask_needs_two_channels():
    bijector = AffineCoupling(lambda a: tf.concat([a, a], -1), mask="channel", event_ndims=1)
    with pytest.raises(ValueError, match="at least 2"):
        bijector.forward(tf.zeros([3, 1]))


def test_rejects_unknown_scale_fn():
    with pytest.raises(ValueError, match="scale_fn"):
        AffineCoupling(lambda a: a, scale_fn="softplus")
