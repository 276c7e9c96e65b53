"""Squeeze: the 2x2 space-to-depth bijector."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tfp_flows.bijectors import Squeeze


@settings(max_examples=6, deadline=None, derandomize=True)
@given(batch_shape=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       half_height=st.integers(1, 3), half_width=st.integers(1, 3), channels=st.integers(1, 3))
def test_matches_space_to_depth_and_depth_to_space(batch_shape, half_height, half_width,
                                                   channels):
    shape = (*batch_shape, 2 * half_height, 2 * half_width, channels)
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    images = x.reshape(-1, *shape[-3:])
    expected = tf.nn.space_to_depth(images, 2).numpy().reshape(
        *batch_shape, half_height, half_width, 4 * channels)
    bijector = Squeeze()
    np.testing.assert_array_equal(bijector.forward(tf.constant(x)), expected)
    np.testing.assert_array_equal(bijector.inverse(tf.constant(expected)), x)
    np.testing.assert_array_equal(
        bijector.inverse(tf.constant(expected)),
        tf.nn.depth_to_space(expected.reshape(-1, *expected.shape[-3:]), 2).numpy().reshape(shape))


@pytest.mark.parametrize("batch_shape", [(3,), (2, 3)])
def test_round_trips_and_log_dets(batch_shape, dtype, tol, checks):
    rng = np.random.default_rng(0)
    z = tf.constant(rng.normal(size=(*batch_shape, 4, 2, 2)), dtype)
    x = tf.constant(rng.normal(size=(*batch_shape, 2, 1, 8)), dtype)
    checks.bijector_properties(Squeeze(), z, x, 3, tol)


def test_same_eager_graph_and_xla(checks):
    rng = np.random.default_rng(1)
    z = tf.constant(rng.normal(size=(2, 4, 4, 3)), tf.float32)
    x = tf.constant(rng.normal(size=(2, 2, 2, 12)), tf.float32)
    checks.same_eager_graph_xla(Squeeze(), z, x, 3, {"rtol": 0.0, "atol": 0.0})


@pytest.mark.parametrize("shape", [(1, 3, 4, 1), (2, 4, 5, 2), (3, 3, 1)])
def test_odd_sizes_raise(shape):
    with pytest.raises(ValueError, match="even"):
        Squeeze().forward(tf.zeros(shape))


def test_event_shapes():
    bijector = Squeeze()
    assert bijector.forward_event_shape([5, 4, 6, 3]) == [5, 2, 3, 12]
    assert bijector.inverse_event_shape([5, 2, 3, 12]) == [5, 4, 6, 3]
    assert bijector.forward_event_shape(tf.TensorShape([None, 4, None, 3])).as_list() == [
        None, 2, None, 12]
    assert bijector.inverse_event_shape(tf.TensorShape([2, None, 8])).as_list() == [4, None, 2]
    np.testing.assert_array_equal(bijector.forward_event_shape_tensor([5, 4, 6, 3]),
                                  [5, 2, 3, 12])
    np.testing.assert_array_equal(bijector.inverse_event_shape_tensor([2, 3, 12]), [4, 6, 3])


def test_static_shape_survives_an_unknown_batch_size():
    # Couplings after a squeeze read the channel count statically.
    bijector = Squeeze()
    forward = tf.function(bijector.forward).get_concrete_function(
        tf.TensorSpec([None, 4, 6, 2], tf.float32))
    inverse = tf.function(bijector.inverse).get_concrete_function(
        tf.TensorSpec([None, 2, 3, 8], tf.float32))
    assert forward.output_shapes.as_list() == [None, 2, 3, 8]
    assert inverse.output_shapes.as_list() == [None, 4, 6, 2]
