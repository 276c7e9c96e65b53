"""ActNorm: the bijector's math, and its data-dependent initialisation (also across replicas)."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tfp_flows.bijectors import ActNorm

SHAPES = [  # (batch_shape, event_shape)
    ((3,), (2, 2, 3)),
    ((2, 3), (2, 1, 2)),
    ((4,), (5,)),
    ((2, 3), (3,)),
]


def _actnorm(channels: int, event_ndims: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    loc = tf.Variable(rng.normal(size=channels), dtype=dtype)
    log_scale = tf.Variable(rng.normal(scale=0.5, size=channels), dtype=dtype)
    return ActNorm(loc, log_scale, event_ndims=event_ndims)


def _initializing(bijector: ActNorm) -> ActNorm:
    """The same bijector over the same variables, built in initialisation mode."""
    return ActNorm(bijector.loc, bijector.log_scale, event_ndims=bijector.forward_min_event_ndims,
                   initialize=True)


def _channel_data(shape, seed: int, dtype) -> tf.Tensor:
    """Data whose channels have clearly different means and spreads."""
    rng = np.random.default_rng(seed)
    channels = shape[-1]
    x = rng.normal(size=shape) * np.linspace(0.5, 3.0, channels) + np.linspace(-2, 4, channels)
    return tf.constant(x, dtype=dtype)


@pytest.mark.parametrize(("batch_shape", "event_shape"), SHAPES)
def test_round_trips_and_log_dets(batch_shape, event_shape, dtype, tol, checks):
    bijector = _actnorm(event_shape[-1], len(event_shape), dtype)
    shape = batch_shape + event_shape
    checks.bijector_properties(bijector, _channel_data(shape, 1, dtype),
                               _channel_data(shape, 2, dtype), len(event_shape), tol)


def test_log_det_is_positions_times_sum_of_log_scale(dtype, tol):
    bijector = _actnorm(3, 3, dtype)
    z = tf.zeros([2, 4, 5, 3], dtype)
    expected = 20 * tf.reduce_sum(bijector.log_scale)
    np.testing.assert_allclose(bijector.forward_log_det_jacobian(z, event_ndims=3),
                               [expected, expected], **tol)


def test_same_eager_graph_and_xla(checks):
    bijector = _actnorm(3, 3, tf.float32)
    checks.same_eager_graph_xla(bijector, _channel_data((2, 2, 2, 3), 1, tf.float32),
                                _channel_data((2, 2, 2, 3), 2, tf.float32), 3,
                                {"rtol": 1e-5, "atol": 1e-5})


def _assert_standardised(z, x, epsilon=1e-6):
    """z has per-channel mean 0 and variance 1, up to ActNorm's epsilon."""
    axes = tuple(range(len(z.shape) - 1))
    variance = np.var(np.asarray(x, np.float64), axis=axes)
    np.testing.assert_allclose(np.mean(z, axis=axes), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.var(z, axis=axes), variance / (variance + epsilon), rtol=1e-4)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(batch=st.integers(2, 4), spatial=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       channels=st.integers(1, 4))
def test_data_dependent_init_standardises_each_channel(batch, spatial, channels, dtype):
    # spatial=[] is a vector event (event_ndims=1); [h, w] an image; [h] a 2-D event.
    event_ndims = len(spatial) + 1
    bijector = _actnorm(channels, event_ndims, dtype)
    x = _channel_data((batch, *spatial, channels), 3, dtype)
    z = _initializing(bijector).inverse(x)
    _assert_standardised(z.numpy(), x)
    _assert_standardised(bijector.inverse(tf.identity(x)).numpy(), x)
    axes = tuple(range(len(x.shape) - 1))
    np.testing.assert_allclose(bijector.loc.numpy(), np.mean(x.numpy(), axis=axes), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("event_ndims", [1, 3])
def test_inverse_without_initialize_leaves_variables_alone(event_ndims, dtype):
    bijector = _actnorm(3, event_ndims, dtype)
    before = [bijector.loc.numpy(), bijector.log_scale.numpy()]
    shape = (4, 2, 2, 3) if event_ndims == 3 else (4, 3)
    bijector.inverse(_channel_data(shape, 4, dtype))
    np.testing.assert_array_equal(bijector.loc.numpy(), before[0])
    np.testing.assert_array_equal(bijector.log_scale.numpy(), before[1])


def test_initialisation_mode_is_fixed_when_the_bijector_is_built():
    """No process-wide state: a bijector built without initialize never assigns, traced or
    not, while another one over the same variables initialises them."""
    bijector = _actnorm(2, 3, tf.float32)
    x = _channel_data((4, 2, 2, 2), 5, tf.float32)
    traced = tf.function(bijector.inverse)
    traced(x)
    before = bijector.loc.numpy()
    z = tf.function(_initializing(bijector).inverse)(x)
    _assert_standardised(z.numpy(), x)
    assert not np.allclose(bijector.loc.numpy(), before)
    after = bijector.loc.numpy()
    traced(x + 1.0)
    np.testing.assert_array_equal(bijector.loc.numpy(), after)


def test_initialize_must_be_a_boolean():
    with pytest.raises(ValueError, match="initialize must be True or False"):
        ActNorm(tf.Variable([0.0]), tf.Variable([0.0]), initialize="yes")


def test_mirrored_strategy_all_reduces_the_statistics():
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2, "tests/conftest.py should provide two logical CPUs"
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        loc = tf.Variable(tf.zeros([3]), aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        log_scale = tf.Variable(tf.zeros([3]),
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    bijector = ActNorm(loc, log_scale, event_ndims=3, initialize=True)
    x = _channel_data((4, 2, 2, 3), 6, tf.float32).numpy()
    x[2:] += 5.0  # the halves differ, so per-replica statistics would give other values
    halves = [x[:2], x[2:]]
    per_replica = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(halves[context.replica_id_in_sync_group]))

    @tf.function
    def initialise(values):
        strategy.run(bijector.inverse, args=(values,))

    initialise(per_replica)

    mean = x.mean(axis=(0, 1, 2))
    log_std = 0.5 * np.log(x.var(axis=(0, 1, 2)) + 1e-6)
    for replica_loc, replica_log_scale in zip(loc.values, log_scale.values, strict=True):
        np.testing.assert_allclose(replica_loc.numpy(), mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(replica_log_scale.numpy(), log_std, rtol=1e-5, atol=1e-5)
