"""MADE: masks that make every output depend only on the inputs before it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.nets import MADE


def _randomized(made: MADE, seed: int) -> MADE:
    """Builds `made` and replaces all its weights (the last layer starts at zero) by noise."""
    made(tf.zeros([1, made.event_size]))
    rng = np.random.default_rng(seed)
    for weight in made.weights:
        weight.assign(rng.normal(size=weight.shape).astype(weight.dtype))
    return made


def _jacobian(made: MADE, x: tf.Tensor) -> np.ndarray:
    """d made(x)[b, d, p] / d x[b, j], of shape (batch, D, params, D)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = made(x)
    return tape.batch_jacobian(y, x).numpy()


@pytest.mark.parametrize("reverse", [False, True], ids=["natural", "reverse"])
@pytest.mark.parametrize(("event_size", "params"), [(1, 2), (3, 1), (5, 2), (6, 3)])
def test_output_d_depends_exactly_on_the_inputs_before_d(event_size, params, reverse):
    made = _randomized(MADE(event_size, hidden_units=(8, 8), params=params, activation="tanh",
                            reverse=reverse), seed=event_size)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, event_size)), tf.float32)
    depends = np.any(_jacobian(made, x) != 0.0, axis=(0, 2))  # (output d, input j)
    d, j = np.meshgrid(np.arange(event_size), np.arange(event_size), indexing="ij")
    # Natural order: d sees j < d. Reversed (D..1): d sees j > d. With hidden layers at least
    # D - 1 wide every allowed connection exists, so the pattern is exactly the strict triangle.
    np.testing.assert_array_equal(depends, j > d if reverse else j < d)


def test_output_shape_with_extra_batch_dims():
    made = MADE(4, hidden_units=(8,), params=3)
    assert made(tf.zeros([2, 3, 4])).shape == [2, 3, 4, 3]
    assert made(tf.zeros([4])).shape == [4, 3]


def test_output_is_zero_at_initialisation():
    made = MADE(3, hidden_units=(8, 8))
    x = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
    np.testing.assert_array_equal(made(x), np.zeros([5, 3, 2]))


def test_wrong_input_size_raises():
    with pytest.raises(ValueError, match="event size 3"):
        MADE(3, hidden_units=(4,))(tf.zeros([2, 4]))


def test_event_size_must_be_positive():
    with pytest.raises(ValueError):
        MADE(0)


@pytest.mark.parametrize("reverse", [False, True], ids=["natural", "reverse"])
def test_config_round_trip(reverse):
    made = _randomized(MADE(4, hidden_units=(6, 5), params=2, activation="tanh",
                            reverse=reverse, name="made"), seed=2)
    x = np.random.default_rng(3).normal(size=(3, 4)).astype("float32")
    for clone in (MADE.from_config(made.get_config()),
                  keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(made))):
        assert isinstance(clone, MADE)
        assert clone.get_config() == made.get_config()
        clone(tf.zeros([1, 4]))
        clone.set_weights(made.get_weights())
        np.testing.assert_allclose(clone(x), made(x), rtol=1e-6)
