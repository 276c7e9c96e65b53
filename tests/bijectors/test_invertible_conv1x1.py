"""InvertibleConv1x1 in its plain and LU parametrisations, and the LU factorisation."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.bijectors import InvertibleConv1x1, lu_factors


def _matrix(channels: int, seed: int) -> np.ndarray:
    """A well-conditioned matrix with a negative determinant half of the time."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(channels, channels)))
    return q @ np.diag(rng.uniform(0.5, 2.0, channels) * rng.choice([-1, 1], channels))


def _conv(weight: np.ndarray, lu: bool, event_ndims: int, dtype) -> InvertibleConv1x1:
    if lu:
        factors = {k: tf.Variable(v, dtype=dtype) for k, v in lu_factors(weight).items()}
        return InvertibleConv1x1(**factors, event_ndims=event_ndims)
    return InvertibleConv1x1(tf.Variable(weight, dtype=dtype), event_ndims=event_ndims)


@pytest.mark.parametrize("lu", [True, False], ids=["lu", "plain"])
@pytest.mark.parametrize(("batch_shape", "event_shape"), [
    ((3,), (2, 2, 3)),
    ((2, 3), (1, 2, 4)),
    ((4,), (4,)),
    ((2, 3), (3,)),
])
def test_round_trips_and_log_dets(lu, batch_shape, event_shape, dtype, tol, checks):
    bijector = _conv(_matrix(event_shape[-1], 0), lu, len(event_shape), dtype)
    assert bijector.uses_lu == lu
    rng = np.random.default_rng(1)
    shape = batch_shape + event_shape
    checks.bijector_properties(bijector, tf.constant(rng.normal(size=shape), dtype),
                               tf.constant(rng.normal(size=shape), dtype), len(event_shape), tol)


@pytest.mark.parametrize("lu", [True, False], ids=["lu", "plain"])
def test_applies_the_same_matrix_at_every_position(lu, dtype, tol):
    weight = _matrix(3, 2)
    bijector = _conv(weight, lu, 3, dtype)
    z = np.random.default_rng(3).normal(size=(2, 2, 3, 3))
    np.testing.assert_allclose(bijector.forward(tf.constant(z, dtype)), z @ weight.T, **tol)


@pytest.mark.parametrize("lu", [True, False], ids=["lu", "plain"])
def test_same_eager_graph_and_xla(lu, checks):
    bijector = _conv(_matrix(4, 4), lu, 3, tf.float32)
    rng = np.random.default_rng(5)
    z, x = (tf.constant(rng.normal(size=(2, 2, 2, 4)), tf.float32) for _ in range(2))
    checks.same_eager_graph_xla(bijector, z, x, 3, {"rtol": 1e-5, "atol": 1e-5})


@pytest.mark.parametrize("channels", [1, 2, 5])
def test_weight_from_lu_factors_is_the_original_matrix(channels, dtype, tol):
    weight = _matrix(channels, channels)
    factors = lu_factors(weight)
    assert np.all(np.tril(factors["upper"]) == 0) and np.all(np.triu(factors["lower"]) == 0)
    np.testing.assert_allclose(_conv(weight, True, 3, dtype).weight(dtype), weight, **tol)


def test_lu_log_det_is_sum_of_log_abs_diag():
    weight = _matrix(4, 6)
    factors = lu_factors(weight)
    np.testing.assert_allclose(factors["log_abs_diag"].sum(), np.linalg.slogdet(weight)[1],
                               rtol=1e-12)


@pytest.mark.parametrize("matrix", [
    np.zeros((3, 3)),
    np.array([[1.0, 2.0], [2.0, 4.0]]),
    np.ones((2, 3)),
    np.ones(4),
], ids=["zero", "singular", "non-square", "vector"])
def test_lu_factors_rejects_singular_and_non_square(matrix):
    with pytest.raises(ValueError):
        lu_factors(matrix)


def test_constructor_needs_exactly_one_parametrisation():
    weight = _matrix(2, 7)
    factors = lu_factors(weight)
    with pytest.raises(ValueError, match="either"):
        InvertibleConv1x1()
    with pytest.raises(ValueError, match="either"):
        InvertibleConv1x1(**{k: v for k, v in factors.items() if k != "sign_diag"})
    with pytest.raises(ValueError, match="not both"):
        InvertibleConv1x1(weight, **factors)
    with pytest.raises(ValueError, match="not both"):
        InvertibleConv1x1(weight, lower=factors["lower"])


def test_plain_log_det_gradient_is_inverse_transpose(dtype, tol):
    # d log|det W| / dW = W^-T: the gradient that trains the plain parametrisation.
    weight = tf.Variable(_matrix(3, 8), dtype=dtype)
    bijector = InvertibleConv1x1(weight, event_ndims=1)
    with tf.GradientTape() as tape:
        log_det = bijector.forward_log_det_jacobian(tf.zeros([3], dtype), event_ndims=1)
    np.testing.assert_allclose(tape.gradient(log_det, weight),
                               np.linalg.inv(weight.numpy()).T, **tol)
