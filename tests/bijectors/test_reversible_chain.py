"""ReversibleChain: same values and gradients as tfb.Chain, without stored activations."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_probability import bijectors as tfb

import tfp_flows
from tfp_flows.bijectors import ActNorm, AffineCoupling, ReversibleChain
from tfp_flows.nets import MLP


def _layers(seed=0, depth=4, size=4):
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(depth):
        net = MLP(size, (16, 16))
        net(tf.zeros([1, size // 2]))
        for variable in net.trainable_variables:
            variable.assign(0.3 * rng.standard_normal(variable.shape).astype("float32"))
        loc = tf.Variable(0.2 * rng.standard_normal(size).astype("float32"))
        log_scale = tf.Variable(0.2 * rng.standard_normal(size).astype("float32"))
        layers.append((net, loc, log_scale, i % 2))
    return layers


def _bijectors(layers):
    out = []
    for net, loc, log_scale, parity in layers:
        out += [ActNorm(loc, log_scale, event_ndims=1),
                AffineCoupling(net, mask="channel", parity=parity, event_ndims=1)]
    return out


def _loss_and_grads(chain, x, variables, inverse):
    with tf.GradientTape() as tape:
        x = tf.identity(x)
        if inverse:
            y, log_det = chain.inverse(x), chain.inverse_log_det_jacobian(x, event_ndims=1)
        else:
            y, log_det = chain.forward(x), chain.forward_log_det_jacobian(x, event_ndims=1)
        loss = 0.5 * tf.reduce_sum(y**2) - tf.reduce_sum(log_det)
    return loss, tape.gradient(loss, variables)


@pytest.mark.parametrize("inverse", [True, False])
@pytest.mark.parametrize("compiled", [False, True])
def test_gradients_equal_ordinary_backprop(inverse, compiled):
    layers = _layers()
    variables = [v for net, loc, scale, _ in layers for v in (*net.trainable_variables, loc, scale)]
    x = tf.constant(np.random.default_rng(1).standard_normal((5, 4)).astype("float32"))

    def run(chain_type):
        chain = (tfb.Chain(_bijectors(layers)) if chain_type == "plain"
                 else ReversibleChain(_bijectors(layers), event_ndims=1))
        return _loss_and_grads(chain, x, variables, inverse)

    if compiled:
        run = tf.function(run)
    loss_plain, grads_plain = run("plain")
    loss_rev, grads_rev = run("reversible")
    np.testing.assert_allclose(loss_rev, loss_plain, rtol=1e-6)
    for plain, rev in zip(grads_plain, grads_rev, strict=True):
        assert rev is not None
        np.testing.assert_allclose(rev, plain, rtol=1e-4, atol=1e-5)


def test_values_match_the_plain_chain():
    layers = _layers(seed=2)
    x = tf.constant(np.random.default_rng(3).standard_normal((3, 4)).astype("float32"))
    plain, rev = tfb.Chain(_bijectors(layers)), ReversibleChain(_bijectors(layers), 1)
    np.testing.assert_allclose(rev.inverse(x), plain.inverse(tf.identity(x)), rtol=1e-6)
    np.testing.assert_allclose(rev.forward(tf.identity(x)), plain.forward(tf.identity(x)),
                               rtol=1e-6)
    np.testing.assert_allclose(rev.inverse_log_det_jacobian(tf.identity(x), event_ndims=1),
                               plain.inverse_log_det_jacobian(tf.identity(x), event_ndims=1),
                               rtol=1e-6)


def test_reversible_glow_trains_like_the_ordinary_one():
    """A model-level check: the same weights give the same loss and gradients."""
    keras.utils.set_random_seed(0)
    kwargs = dict(levels=2, depth=2, hidden=8, num_levels=17)
    plain = tfp_flows.glow((4, 4, 1), **kwargs)
    rev = tfp_flows.glow((4, 4, 1), reversible=True, **kwargs)
    rng = np.random.default_rng(0)
    # Perturb only the trainable weights: the LU permutation must stay a permutation.
    for variable in plain.trainable_variables:
        variable.assign(variable + 0.05 * rng.standard_normal(variable.shape))
    rev.set_weights(plain.get_weights())
    x = (rng.integers(0, 17, (8, 4, 4, 1)) + rng.random((8, 4, 4, 1))).astype("float32")
    results = []
    for model in (plain, rev):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model.log_prob(x))
        results.append((loss, tape.gradient(loss, model.trainable_variables)))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        # Glow's stacked step weights are read row by row: their gradients come back sparse.
        np.testing.assert_allclose(tf.convert_to_tensor(b), tf.convert_to_tensor(a), rtol=1e-3,
                                   atol=1e-4)


def test_empty_chain_is_rejected():
    with pytest.raises(ValueError, match="at least one bijector"):
        ReversibleChain([], event_ndims=1)


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_gradients_do_not_depend_on_the_call_order(mode):
    """ildj before inverse on a watched x ran the chain twice; the second run took the
    members' cached outputs of the first, read no variable, and dropped their gradients."""
    layers = _layers(seed=4, depth=3)
    variables = [v for net, loc, scale, _ in layers for v in (*net.trainable_variables, loc, scale)]
    x = tf.constant(np.random.default_rng(5).standard_normal((6, 4)).astype("float32"))

    def loss_of(chain, x):
        log_det = tf.reduce_sum(chain.inverse_log_det_jacobian(x, event_ndims=1))
        return log_det + tf.reduce_sum(chain.inverse(x) ** 2)

    def grads(chain_type):
        chain = (tfb.Chain(_bijectors(layers)) if chain_type == "plain"
                 else ReversibleChain(_bijectors(layers), event_ndims=1))
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_of(chain, x)
        return tape.gradient(loss, variables)

    if mode != "eager":
        grads = tf.function(grads, jit_compile=mode == "xla")
    plain, rev = grads("plain"), grads("reversible")
    for a, b in zip(plain, rev, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)

    # A central difference along a random direction of the last conditioner's output kernel
    # sides with both (the dropped gradient was zero there).
    kernel = layers[-1][0].trainable_variables[-2]
    saved = kernel.numpy()
    direction = np.random.default_rng(6).standard_normal(saved.shape).astype("float32")
    direction /= np.linalg.norm(direction)

    def loss_at(step):
        kernel.assign(saved + step * direction)
        # A fresh x: TFP caches an ildj by input tensor (and by bijectors equal in their
        # variables), so on the same x it would return the value before the assignment.
        return float(loss_of(ReversibleChain(_bijectors(layers), event_ndims=1),
                             tf.identity(x)))

    numeric = (loss_at(1e-2) - loss_at(-1e-2)) / 2e-2
    kernel.assign(saved)
    position = next(i for i, v in enumerate(variables) if v is kernel)
    assert abs(numeric) > 0.1
    np.testing.assert_allclose(np.sum(rev[position].numpy() * direction), numeric, rtol=2e-2)
