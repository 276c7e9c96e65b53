"""FFJORD: exact log-density against brute-force integration, Hutchinson's estimator unbiased,
the adjoint gradient, the train/eval trace switch, saving, and refusals."""

import importlib
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from exactness import move_off_init

import tfp_flows

# The module (tfp_flows.families.ffjord is the builder of the same name).
ffjord_module = importlib.import_module("tfp_flows.families.ffjord")

RK4_STEPS = 40


def _model(seed=0, **kwargs):
    """A tiny FFJORD on 2-D vectors with its weights moved off their initial values."""
    keras.utils.set_random_seed(seed)
    model = tfp_flows.ffjord((2,), **{"hidden": 8, "num_hidden": 2, **kwargs})
    move_off_init(model.trainable_variables, 0.5, seed=seed)
    return model


def _points(n=6, seed=1):
    return np.random.default_rng(seed).normal(size=(n, 2)).astype("float32")


# Tracing an ODE solve is nearly all of these tests' time (the solve itself takes well under a
# second), so the tests that only read a model share it, and with it its traced log_prob.
@pytest.fixture(scope="module")
def one_block():
    return _model()


@pytest.fixture(scope="module")
def two_blocks():
    """Two blocks, and solver settings off their defaults (for the round trip)."""
    return _model(num_blocks=2, rtol=1e-6, atol=1e-6, integration_time=0.5)


def _brute_force_log_prob(model, x, context=None):
    """log p(x) by a fixed-step RK4 of its own, independent of TFP's solver and trace:
    each block is integrated backwards from T to 0 with the trace of the full Jacobian
    (one gradient per dimension) beside the state. Returns (log p, z)."""
    x = tf.constant(x)
    context = None if context is None else tf.constant(context)

    def derivative_and_trace(step, t, state):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(state)
            derivative = step.dynamics(t, state, context)
            parts = [derivative[:, j] for j in range(2)]
        trace = sum(tape.gradient(parts[j], state)[:, j] for j in range(2))
        return derivative, trace

    @tf.function
    def solve(x):
        state, log_det = x, tf.zeros(tf.shape(x)[:1])
        for step in model.flow.steps:  # data -> latent
            time = step.integration_time
            h = -time / RK4_STEPS

            def body(i, state, log_det, step=step, time=time, h=h):
                t = time + tf.cast(i, tf.float32) * h
                k1, l1 = derivative_and_trace(step, t, state)
                k2, l2 = derivative_and_trace(step, t + h / 2, state + h / 2 * k1)
                k3, l3 = derivative_and_trace(step, t + h / 2, state + h / 2 * k2)
                k4, l4 = derivative_and_trace(step, t + h, state + h * k3)
                return (i + 1, state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4),
                        log_det + h / 6 * (l1 + 2 * l2 + 2 * l3 + l4))

            _, state, log_det = tf.while_loop(lambda i, *_: i < RK4_STEPS, body,
                                              (tf.constant(0), state, log_det))
        return state, log_det

    z, log_det = solve(x)
    base = -0.5 * tf.reduce_sum(z**2, -1) - math.log(2 * math.pi)
    # Integrating from T down to 0 accumulates -(integral of the trace) = log |dz/dx|.
    return (base + log_det).numpy(), z.numpy()


@pytest.mark.parametrize("context", [None, True])
def test_exact_log_prob_matches_brute_force_integration(two_blocks, context):
    model = two_blocks if context is None else _model(context_shape=(2,))
    x = _points()
    context = None if context is None else _points(seed=2)
    log_prob = model.log_prob(x, context).numpy()
    expected, z = _brute_force_log_prob(model, x, context)
    np.testing.assert_allclose(log_prob, expected, atol=1e-3)
    # The weights moved: the flow is far from the identity it starts as.
    assert np.abs(log_prob - (-0.5 * (x**2).sum(-1) - math.log(2 * math.pi))).max() > 0.1
    if context is not None:
        np.testing.assert_allclose(model.decode(z, context), x, atol=1e-3)


def test_hutchinson_estimate_is_unbiased(one_block):
    model = one_block
    point = _points(1)
    exact = float(model.log_prob(point)[0])
    repeats = np.repeat(point, 4000, axis=0)
    tf.random.set_seed(3)
    with model.flow.training_pass():
        estimates = tf.function(model._log_prob)(tf.constant(repeats)).numpy()
    standard_error = estimates.std() / math.sqrt(len(estimates))
    assert estimates.std() > 1e-2  # each row drew its own probe
    assert abs(estimates.mean() - exact) < 3 * standard_error, (estimates.mean(), exact,
                                                                standard_error)


def test_adjoint_gradient_matches_central_differences(one_block):
    """The adjoint method's gradient (TFP's) reaches every Keras-owned weight, with the right
    values: its projection on a random direction against central differences of log p."""
    model = one_block
    x = tf.constant(_points())
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model._log_prob(x))
    gradients = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and np.abs(g).max() > 0 for g in gradients)
    rng = np.random.default_rng(5)
    direction = [rng.standard_normal(v.shape).astype("float32") for v in model.trainable_variables]
    origin = [v.numpy() for v in model.trainable_variables]

    def loss_at(epsilon):
        for variable, value, step in zip(model.trainable_variables, origin, direction,
                                         strict=True):
            variable.assign(value + epsilon * step)
        return -float(np.mean(model.log_prob(x)))

    # The step is |direction| ~ 10 times epsilon: at 1e-2 the differences' own error was 2%;
    # at 2.5e-3 they were 0.2% from their limit, and the adjoint 0.5% (the solver's tolerance).
    epsilon = 2.5e-3
    central = (loss_at(epsilon) - loss_at(-epsilon)) / (2 * epsilon)
    loss_at(0.0)  # the shared model's weights back
    projected = sum(float(np.sum(g * d)) for g, d in zip(gradients, direction, strict=True))
    assert abs(projected - central) < 1e-2 * abs(central) + 1e-3, (projected, central)


def test_fit_uses_the_training_trace_and_everything_else_the_exact_one(monkeypatch):
    used = []
    original = ffjord_module._trace_augmentation

    def recording(estimator):
        used.append(estimator)
        return original(estimator)

    monkeypatch.setattr(ffjord_module, "_trace_augmentation", recording)
    model = _model()
    x = _points(32)
    before = [v.numpy() for v in model.trainable_variables]
    model.compile(keras.optimizers.Adam(1e-2))
    used.clear()
    history = model.fit(x, batch_size=16, epochs=1, verbose=0)
    assert set(used) == {"hutchinson"}
    assert np.isfinite(history.history["loss"]).all()
    assert any(np.abs(a - v.numpy()).max() > 1e-4
               for a, v in zip(before, model.trainable_variables, strict=True))
    used.clear()
    model.evaluate(x, verbose=0)
    model.log_prob(x)
    assert set(used) == {"exact"}


def test_exact_training_trace_is_deterministic(one_block):
    model = _model(trace_estimator="exact")
    # The same weights as one_block (the same seed), whose log_prob is the exact one.
    for mine, shared in zip(model.trainable_variables, one_block.trainable_variables,
                            strict=True):
        np.testing.assert_array_equal(mine.numpy(), shared.numpy())
    point = np.repeat(_points(1), 8, axis=0)
    with model.flow.training_pass():
        values = tf.function(model._log_prob)(tf.constant(point)).numpy()
    np.testing.assert_allclose(values, one_block.log_prob(point), atol=1e-5)


def test_keras_file_round_trip_keeps_the_log_prob(two_blocks, tmp_path):
    model = two_blocks
    x = _points()
    path = tmp_path / "ffjord.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    config = loaded.flow.get_config()
    assert (config["num_blocks"], config["rtol"], config["atol"], config["integration_time"],
            config["trace_estimator"]) == (2, 1e-6, 1e-6, 0.5, "hutchinson")
    np.testing.assert_allclose(loaded.log_prob(x), model.log_prob(x), rtol=1e-6, atol=1e-6)


def test_images_are_flattened_and_sampled():
    keras.utils.set_random_seed(0)
    model = tfp_flows.ffjord((2, 2, 1), hidden=4, num_hidden=1, num_levels=4)
    samples = model.sample(3, seed=1).numpy()
    assert samples.shape == (3, 2, 2, 1)
    x = np.random.default_rng(0).uniform(0, 4, (3, 2, 2, 1)).astype("float32")
    assert np.isfinite(model.log_prob(x)).all()


@pytest.mark.parametrize("kwargs,message", [
    ({"rtol": 0.0}, "rtol must be a number > 0 and finite, got 0.0"),
    ({"atol": -1e-5}, "atol must be a number > 0 and finite"),
    ({"rtol": float("nan")}, "rtol must be a number > 0"),
    ({"integration_time": 0}, "integration_time must be a number > 0"),
    ({"solver": "euler"}, "solver must be one of ('dopri5',), got 'euler'"),
    ({"trace_estimator": "rademacher"}, "trace_estimator must be one of ('exact', "
                                        "'hutchinson')"),
    ({"eval_trace_estimator": 1}, "eval_trace_estimator must be one of"),
    ({"num_hidden": 0}, "num_hidden must be an integer >= 1"),
    ({"reversible": True}, "FFJORD takes no reversible=True"),
])
def test_bad_arguments_are_refused_with_a_message(kwargs, message):
    with pytest.raises(ValueError) as caught:
        tfp_flows.ffjord((2,), **kwargs)
    assert message in str(caught.value)


def test_an_image_too_large_for_the_exact_trace_is_refused():
    with pytest.raises(ValueError, match=r"\(32, 32, 3\) has 3072 entries, more than 1024\. "
                                         r"Pass eval_trace_estimator='hutchinson'"):
        tfp_flows.ffjord((32, 32, 3), num_levels=256)
