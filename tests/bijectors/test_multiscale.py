"""MultiScale: squeeze, flow, split, nested levels and the learned split prior."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_probability import bijectors as tfb
from tensorflow_probability import distributions as tfd

from tfp_flows.bijectors import AffineCoupling, InvertibleConv1x1, MultiScale, lu_factors

EVENT_SHAPE = (4, 4, 1)


def _step(channels, parity, dtype, seed, checks, counters=None):
    """A Glow-like step on (H, W, channels): a 1x1 convolution and an affine coupling."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(channels, channels)))
    factors = {k: tf.constant(v, dtype) for k, v in lu_factors(q).items()}
    conditioner = checks.coupling_conditioner("channel", parity, (1, 1, channels), 2, dtype, seed)
    if counters is not None:
        conditioner = checks.CountingConditioner(conditioner)
        counters.append(conditioner)
    return [InvertibleConv1x1(**factors),
            AffineCoupling(conditioner, mask="channel", parity=parity, event_ndims=3)]


def _two_levels(dtype, checks, split_prior: bool, counters=None):
    """(4, 4, 1) -> level 1 on (2, 2, 4), keeps (2, 2, 2) -> level 2 on (1, 1, 8).

    Returns the bijector and its split prior (or None).
    """
    inner = MultiScale(tfb.Chain(_step(8, 0, dtype, 1, checks, counters)))
    prior = None
    if split_prior:
        prior = checks.random_conditioner(2, 4, dtype, seed=2, image=True)
        if counters is not None:
            prior = checks.CountingConditioner(prior)
            counters.append(prior)
    flow = tfb.Chain(_step(4, 0, dtype, 3, checks, counters) + _step(4, 1, dtype, 4, checks,
                                                                      counters))
    return MultiScale(flow, inner=inner, split_prior=prior), prior


def _data(shape, seed, dtype):
    return tf.constant(np.random.default_rng(seed).normal(size=shape), dtype)


@pytest.mark.parametrize("split_prior", [True, False], ids=["split-prior", "no-prior"])
def test_round_trips_and_log_dets(split_prior, dtype, tol, checks):
    bijector, _ = _two_levels(dtype, checks, split_prior)
    shape = (2, 3) + EVENT_SHAPE
    checks.bijector_properties(bijector, _data(shape, 5, dtype), _data(shape, 6, dtype), 3, tol,
                               log_det_atol=1e-3 if dtype == tf.float32 else None)


def test_same_eager_graph_and_xla(checks):
    bijector, _ = _two_levels(tf.float32, checks, split_prior=True)
    checks.same_eager_graph_xla(bijector, _data((2, *EVENT_SHAPE), 7, tf.float32),
                                _data((2, *EVENT_SHAPE), 8, tf.float32), 3,
                                {"rtol": 1e-5, "atol": 1e-5})


@pytest.mark.parametrize("split_prior", [True, False], ids=["split-prior", "no-prior"])
def test_nested_structure(split_prior, dtype, tol, checks):
    # The latent is depth_to_space(concat(inner^-1(h_keep), standardised h_out)).
    bijector, prior = _two_levels(dtype, checks, split_prior)
    x = _data((2, *EVENT_SHAPE), 9, dtype)
    h_keep, h_out = tf.split(bijector.flow.inverse(tf.nn.space_to_depth(x, 2)), 2, axis=-1)
    z_keep = bijector.inner.inverse(h_keep)
    z_out = h_out
    if split_prior:
        mu, raw = tf.split(prior(h_keep), 2, axis=-1)
        log_sigma = tf.where(raw > 0, 3.0 * tf.tanh(raw / 3.0), raw)
        z_out = (h_out - mu) * tf.exp(-log_sigma)
    expected = tf.nn.depth_to_space(tf.concat([z_keep, z_out], axis=-1), 2)
    np.testing.assert_allclose(bijector.inverse(tf.identity(x)), expected, **tol)


def test_split_prior_standardises_the_factored_out_half(dtype, tol):
    # With an identity flow, h_out = mu(h_keep) + sigma(h_keep) * eps must map to z_out = eps.
    def prior(h_keep):
        return tf.concat([0.5 * h_keep + 1.0, tf.tanh(h_keep) - 0.3], axis=-1)

    rng = np.random.default_rng(10)
    keep = tf.constant(rng.normal(size=(3, 2, 2, 2)), dtype)
    eps = tf.constant(rng.normal(size=(3, 2, 2, 2)), dtype)
    # The prior's raw log-scale tanh(keep) - 0.3, in (-1.3, 0.7), is bounded above by
    # 3 tanh(r / 3) where positive.
    raw = tf.tanh(keep) - 0.3
    mu, log_sigma = 0.5 * keep + 1.0, tf.where(raw > 0, 3.0 * tf.tanh(raw / 3.0), raw)
    x = tf.nn.depth_to_space(tf.concat([keep, mu + tf.exp(log_sigma) * eps], axis=-1), 2)
    bijector = MultiScale(tfb.Identity(), split_prior=prior)

    z = bijector.inverse(tf.identity(x))
    z_keep, z_out = tf.split(tf.nn.space_to_depth(z, 2), 2, axis=-1)
    np.testing.assert_allclose(z_keep, keep, **tol)
    np.testing.assert_allclose(z_out, eps, **tol)
    np.testing.assert_allclose(bijector.inverse_log_det_jacobian(tf.identity(x), event_ndims=3),
                               -tf.reduce_sum(log_sigma, axis=[1, 2, 3]), **tol)
    np.testing.assert_allclose(bijector.forward(tf.identity(z)), x, **tol)


def test_every_network_runs_once_per_log_prob(checks):
    counters = []
    bijector, _ = _two_levels(tf.float32, checks, split_prior=True, counters=counters)
    assert len(counters) == 4
    distribution = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), EVENT_SHAPE),
                                               bijector)
    log_prob = distribution.log_prob(_data((3, *EVENT_SHAPE), 11, tf.float32))
    assert log_prob.shape == [3]
    assert [counter.calls for counter in counters] == [1, 1, 1, 1]


def test_needs_even_sizes():
    with pytest.raises(ValueError, match="even"):
        MultiScale(tfb.Identity()).inverse(tf.zeros([1, 3, 4, 2]))


def test_a_split_prior_of_the_wrong_width_is_refused():
    # The factored-out half of (2, 2, 4) has 2 channels: mean and log-scale need 4 values.
    bijector = MultiScale(tfb.Identity(), split_prior=lambda h: tf.zeros([*h.shape[:-1], 2]))
    for method in (bijector.forward, bijector.inverse):
        with pytest.raises(ValueError, match="split prior returned 2 values"):
            method(tf.zeros([3, 4, 4, 1]))
