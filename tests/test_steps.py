"""GlowSteps: a level's Glow steps with their parameters stacked, one variable per kind."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_probability import bijectors as tfb

import tfp_flows
from tfp_flows.bijectors import ActNorm, Coupling, InvertibleConv1x1
from tfp_flows.nets import MLP, ConvNet
from tfp_flows.steps import GlowSteps
from tfp_flows.transforms import AffineTransform

SHAPES = {"image": (4, 4, 4), "vector": (6,)}


def _steps(shape, depth=3, context_size=0):
    keras.utils.set_random_seed(0)
    steps = GlowSteps(AffineTransform("sigmoid"), shape, depth, hidden=8,
                      context_size=context_size)
    rng = np.random.default_rng(1)
    # Off the initial values (zero output layers, zero ActNorm), each row differently; the
    # fixed LU parts (permutation, signs) stay as they are.
    for variable in steps.trainable_weights:
        variable.assign(variable + 0.2 * rng.standard_normal(variable.shape))
    return steps


def _one_step(steps, k, context):
    """Step k of `steps` built on its own: plain tensors and a network without copies."""
    rows = {key: tf.constant(variable.numpy()[k]) for key, variable in steps.conv.items()}
    stacked = steps.net
    kind = ConvNet if isinstance(stacked, ConvNet) else MLP
    options = ({"hidden_channels": 8, "num_hidden": 2} if kind is ConvNet
               else {"hidden_units": (8, 8)})
    net = kind(stacked.output_size, context_size=stacked.context_size, **options)
    net.build(stacked.get_build_config()["input_shape"])
    for mine, theirs in zip(net.weights, stacked.weights, strict=True):
        mine.assign(theirs.numpy()[k])
    conditioner = net if context is None else (lambda x: net(x, context))
    ndims = steps.event_rank
    return [ActNorm(tf.constant(steps.loc.numpy()[k]), tf.constant(steps.log_scale.numpy()[k]),
                    event_ndims=ndims),
            InvertibleConv1x1(**rows, event_ndims=ndims),
            Coupling(conditioner, steps.transform, mask="channel", parity=0, event_ndims=ndims)]


@pytest.mark.parametrize("kind", sorted(SHAPES))
@pytest.mark.parametrize("context_size", [0, 2])
def test_each_row_is_a_step_of_its_own(kind, context_size):
    shape = SHAPES[kind]
    steps = _steps(shape, context_size=context_size)
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(5, *shape)).astype("float32"))
    context = (tf.constant(rng.normal(size=(5, context_size)).astype("float32"))
               if context_size else None)
    stacked = tfb.Chain(steps.bijectors(context))
    separate = tfb.Chain([b for k in range(steps.depth) for b in _one_step(steps, k, context)])
    ndims = len(shape)
    np.testing.assert_allclose(stacked.inverse(x), separate.inverse(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stacked.inverse_log_det_jacobian(x, event_ndims=ndims),
                               separate.inverse_log_det_jacobian(x, event_ndims=ndims),
                               rtol=1e-5, atol=1e-4)
    z = stacked.inverse(x)
    np.testing.assert_allclose(stacked.forward(z), x, rtol=1e-4, atol=1e-4)


def test_rows_get_their_own_gradients():
    steps = _steps(SHAPES["image"])
    x = tf.constant(np.random.default_rng(3).normal(size=(5, 4, 4, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tfb.Chain(steps.bijectors()).inverse(x) ** 2)
    gradients = tape.gradient(loss, steps.trainable_weights)
    assert all(g is not None for g in gradients)
    for variable, gradient in zip(steps.trainable_weights, gradients, strict=True):
        dense = tf.convert_to_tensor(gradient)
        assert dense.shape == variable.shape
        for k in range(steps.depth):
            assert float(tf.reduce_max(tf.abs(dense[k]))) > 0, (variable.path, k)


def test_a_glow_level_has_the_same_variables_at_any_depth():
    counts = {}
    for depth in (1, 2, 5):
        model = tfp_flows.glow((8, 8, 1), num_scales=2, depth=depth, hidden=4, num_levels=4)
        counts[depth] = len(model.trainable_variables)
        stacked = [v for v in model.trainable_variables if "_steps" in v.path]
        assert stacked and all(v.shape[0] == depth for v in stacked)
    assert counts[1] == counts[2] == counts[5]


def test_data_dependent_init_fills_each_row_from_its_own_input():
    keras.utils.set_random_seed(0)
    steps = GlowSteps(AffineTransform("sigmoid"), (4, 4, 4), 3, hidden=8)
    for variable in steps.net.trainable_weights:  # couplings that change the data
        variable.assign(variable + 0.3 * np.random.default_rng(4).standard_normal(variable.shape))
    x = tf.constant((3.0 + 2.0 * np.random.default_rng(5).normal(size=(64, 4, 4, 4)))
                    .astype("float32"))
    tf.function(lambda x: tfb.Chain(steps.bijectors(initialize=True)).inverse(x))(x)
    # After initialisation, each step's ActNorm standardises what reaches it.
    bijectors = steps.bijectors()
    h = x
    for k in range(steps.depth):
        actnorm, conv, coupling = bijectors[3 * k:3 * k + 3]
        normalised = actnorm.inverse(h)
        np.testing.assert_allclose(tf.reduce_mean(normalised, [0, 1, 2]), 0.0, atol=1e-4)
        np.testing.assert_allclose(tf.math.reduce_std(normalised, [0, 1, 2]), 1.0, atol=1e-3)
        h = coupling.inverse(conv.inverse(normalised))
    assert len({tuple(np.round(row, 4)) for row in steps.loc.numpy()}) == steps.depth


def test_a_stacked_network_must_be_called_with_a_copy():
    net = ConvNet(4, hidden_channels=8, copies=2)
    net.build((None, 4, 4, 2))
    x = tf.zeros([1, 4, 4, 2])
    assert net(x, copy=1).shape == [1, 4, 4, 4]
    with pytest.raises(ValueError, match="2 stacked copies; got copy=None"):
        net(x)
    for bad in (2, -1, True, 0.5):
        with pytest.raises(ValueError, match=f"copies 0 to 1; got copy={bad}"):
            net(x, copy=bad)
    with pytest.raises(ValueError, match="no stacked copies; got copy=0"):
        ConvNet(4, hidden_channels=8)(x, copy=0)
    with pytest.raises(ValueError, match="copies must be None or an integer >= 1, got 0"):
        ConvNet(4, copies=0)
