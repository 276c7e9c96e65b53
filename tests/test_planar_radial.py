"""Planar and radial flows: log-dets against brute force, the paper's constraints, the
inverses (numeric for planar, closed form for radial), own samples, VI, saving, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_flows
from tfp_flows.families.planar import PlanarBijector
from tfp_flows.families.radial import RadialBijector

FAMILIES = ("planar", "radial")


def _model(family: str, size: int = 3, num_layers: int = 3, seed: int = 0):
    """A flow whose weights are moved well off their near-identity start."""
    keras.utils.set_random_seed(seed)
    model = tfp_flows.build(family, (size,), num_layers=num_layers)
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        variable.assign(variable.numpy() + rng.normal(scale=0.7, size=variable.shape))
    return model


def _brute_force_log_det(fn, z):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        x = fn(z)
    return tf.linalg.slogdet(tape.batch_jacobian(x, z, experimental_use_pfor=False))[1]


def _layers(model):
    return model.flow.steps[0].bijectors()


def _points(size: int, n: int = 16, seed: int = 1):
    return tf.constant(np.random.default_rng(seed).normal(scale=1.5, size=(n, size)),
                       tf.float32)


@pytest.mark.parametrize("family", FAMILIES)
def test_log_det_of_each_layer_and_of_the_flow_is_the_jacobians(family):
    model = _model(family)
    z = _points(3)
    for layer in [*_layers(model), model.bijector]:
        log_det = layer.forward_log_det_jacobian(tf.identity(z), event_ndims=1)
        np.testing.assert_allclose(log_det, _brute_force_log_det(layer.forward, z),
                                   rtol=1e-4, atol=1e-4, err_msg=layer.name)
    # The layers do change volume: the check above is not comparing zeros.
    assert np.std(model.bijector.forward_log_det_jacobian(z, event_ndims=1)) > 0.05


def _extreme_parameters(family: str, rng, size: int = 2):
    """Raw parameters from far outside anything training starts at, both signs."""
    if family == "planar":
        w = rng.normal(scale=3.0, size=size).astype(np.float32)
        u = -rng.uniform(1, 20) * w + rng.normal(scale=3.0, size=size)  # w.u << 0
        b = rng.normal(scale=3.0)
        return PlanarBijector(lambda: (w, u, b)), w
    z0 = rng.normal(scale=2.0, size=size).astype(np.float32)
    alpha_raw, beta_raw = rng.normal(scale=5.0, size=2)
    return RadialBijector(lambda: (z0, alpha_raw, beta_raw)), z0


@pytest.mark.parametrize("family", FAMILIES)
def test_constraint_holds_and_the_map_is_invertible_for_any_raw_parameters(family):
    rng = np.random.default_rng(3)
    grid = np.stack(np.meshgrid(np.linspace(-4, 4, 41), np.linspace(-4, 4, 41)), -1)
    z = tf.constant(grid.reshape(-1, 2), tf.float32)
    for _ in range(20):
        bijector, direction = _extreme_parameters(family, rng)
        if family == "planar":
            w, u_hat, _, softplus = bijector.constrained()
            # w.u_hat = softplus(w.u) - 1 >= -1 (the log-det uses that form), up to the
            # float32 rounding of w.u, which is in the hundreds here.
            assert float(softplus) >= 0.0
            w_raw, u_raw, _ = bijector._parameter_fn()
            rounding = 1e-6 * (1.0 + abs(float(np.dot(w_raw, u_raw))))
            assert float(tf.reduce_sum(w * u_hat)) >= -1.0 - rounding
            # Increasing along w: the component along w of f(t w) grows with t (strictly in
            # exact arithmetic; float32 rounding of the sum z + u_hat tanh(.) is allowed).
            t = tf.linspace(-6.0, 6.0, 2001)[:, None]
            along = tf.linalg.matvec(bijector.forward(t * w / tf.norm(w)), w).numpy()
            steps = np.diff(along)
            assert np.all(steps > -1e-5 * np.max(np.abs(along))) and np.mean(steps > 0) > 0.95
        else:
            _, alpha, beta, _ = bijector.constrained()
            assert float(alpha) > 0 and float(beta) >= -float(alpha)
            # The radius of f(z) grows strictly with that of z along any ray from z0.
            r = tf.linspace(1e-3, 8.0, 2001)[:, None]
            out = bijector.forward(direction + r * tf.constant([[0.6, 0.8]]))
            assert np.all(np.diff(tf.norm(out - direction, axis=-1).numpy()) > 0)
        x = bijector.forward(tf.identity(z))
        back = bijector.inverse(tf.identity(x))
        # The inverse solves f(z) = x to float precision everywhere (backward error) ...
        np.testing.assert_allclose(bijector.forward(back), x, atol=1e-4)
        # ... and lands on the grid point itself, within the float error of x divided by
        # |det|: with w.u_hat = -1 in float32 (planar) or beta = -alpha (radial), |det| goes
        # to 0 at some points and the root there is ill-conditioned (a cube's, for planar).
        log_det = bijector.forward_log_det_jacobian(z, event_ndims=1).numpy()
        assert np.all(np.isfinite(log_det))
        error = np.max(np.abs(back.numpy() - z.numpy()), axis=-1)
        assert np.all(error <= 2e-4 * np.maximum(1.0, np.exp(-log_det)))


@pytest.mark.parametrize("family", FAMILIES)
def test_own_samples_score_exactly_and_fresh_data_through_the_inverse(family):
    model = _model(family)
    bijector = model.bijector
    base = model.base_distribution()
    z = base.sample(256, seed=(1, 2))
    x = bijector.forward(z)
    expected = base.log_prob(z) - bijector.forward_log_det_jacobian(z, event_ndims=1)
    distribution = tfp.distributions.TransformedDistribution(base, bijector)
    # The same tensor: TFP's cache hands back z, no inverse runs.
    np.testing.assert_allclose(distribution.log_prob(x), expected, rtol=1e-6, atol=1e-6)
    # A fresh copy (model.log_prob): through the inverse, to float32 precision.
    np.testing.assert_allclose(model.log_prob(x.numpy()), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.encode(x.numpy()), z, atol=1e-4)
    samples, log_q = model.distribution.experimental_sample_and_log_prob(64, seed=(3, 4))
    np.testing.assert_allclose(log_q, model.log_prob(samples.numpy()), rtol=1e-4, atol=1e-4)
    drawn = model.sample(64, seed=5)
    np.testing.assert_allclose(model.decode(model.encode(drawn)), drawn, atol=1e-4)


def test_planar_inverse_has_the_implicit_gradient():
    model = _model("planar", size=2)
    x = _points(2, n=8, seed=7)
    b = model.flow.steps[0].b
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(model._log_prob(x))
    gradient = tape.gradient(total, b.value).numpy()

    def objective(values):
        b.assign(values)
        return float(tf.reduce_sum(model._log_prob(x)))

    start, step = b.numpy(), 1e-2
    numeric = [(objective(start + step * e) - objective(start - step * e)) / (2 * step)
               for e in np.eye(len(start), dtype=np.float32)]
    b.assign(start)
    np.testing.assert_allclose(gradient, numeric, rtol=2e-2, atol=2e-3)
    assert np.max(np.abs(gradient)) > 0.1


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_surrogate_posterior_trains_the_model_weights(family):
    keras.utils.set_random_seed(0)
    model = tfp_flows.build(family, (2,), num_layers=4)
    q = model.distribution
    target = tfp.distributions.MultivariateNormalDiag([1.0, -1.0], [0.5, 2.0])
    before = [v.numpy() for v in model.trainable_variables]
    losses = tfp.vi.fit_surrogate_posterior(
        target.log_prob, q, keras.optimizers.Adam(0.05), num_steps=40, sample_size=64,
        seed=(0, 1), trainable_variables=q.trainable_variables)
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.5
    assert all(np.any(v.numpy() != w) for v, w in zip(model.trainable_variables, before,
                                                      strict=True))


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_on_data_lowers_the_nll(family):
    keras.utils.set_random_seed(0)
    model = tfp_flows.build(family, (2,), num_layers=4)
    data = np.random.default_rng(0).normal([2.0, -1.0], [0.5, 1.5], size=(256, 2))
    model.compile(keras.optimizers.Adam(0.05))
    history = model.fit(data.astype("float32"), batch_size=64, epochs=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] - 0.3


@pytest.mark.parametrize("family", FAMILIES)
def test_keras_file_reload_gives_the_same_samples_and_log_probs(family, tmp_path):
    model = _model(family)
    path = str(tmp_path / "flow.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    samples = model.sample(32, seed=9)
    np.testing.assert_array_equal(loaded.sample(32, seed=9), samples)
    np.testing.assert_array_equal(loaded.log_prob(samples), model.log_prob(samples))
    assert type(loaded.flow) is type(model.flow) and loaded.flow.num_layers == 3


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_model_export_serves_every_signature(family, tmp_path):
    model = _model(family)
    served = tf.saved_model.load(tfp_flows.export_saved_model(model, tmp_path / "1"))
    samples = served.signatures["sample"](n=tf.constant(16), temperature=tf.constant(1.0),
                                          seed=tf.constant(4, tf.int64))["x"]
    np.testing.assert_allclose(samples, model.sample(16, seed=4), atol=1e-6)
    np.testing.assert_allclose(served.signatures["log_prob"](x=samples)["log_prob"],
                               model.log_prob(samples), rtol=1e-5, atol=1e-5)
    z = served.signatures["encode"](x=samples)["z"]
    np.testing.assert_allclose(served.signatures["decode"](z=z)["x"], samples, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kwargs, message", [
    ({"event_shape": (8, 8, 1)}, r"acts on vectors, event_shape \(D,\); got \(8, 8, 1\)"),
    ({"event_shape": (8, 8, 1), "num_layers": 2}, "acts on vectors"),
    ({"num_layers": 0}, "num_layers must be an integer >= 1, got 0"),
    ({"num_layers": 2.5}, "num_layers must be an integer >= 1"),
    ({"context_shape": (2,)}, "unconditional"),
    ({"num_classes": 3}, "unconditional"),
    ({"reversible": True}, "does not take reversible=True"),
])
def test_bad_arguments_are_refused(family, kwargs, message):
    kwargs = {"event_shape": (2,), **kwargs}
    with pytest.raises(ValueError, match=message):
        tfp_flows.build(family, kwargs.pop("event_shape"), **kwargs)


def test_layers_have_the_papers_parameter_counts():
    for family, per_layer in (("planar", 2 * 5 + 1), ("radial", 5 + 2)):
        model = tfp_flows.build(family, (5,), num_layers=7)
        assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 7 * per_layer
        assert len(model.trainable_variables) == 3  # stacked: one variable per kind


@pytest.mark.parametrize("family", FAMILIES)
def test_initial_flow_is_near_the_identity_but_not_at_it(family):
    keras.utils.set_random_seed(0)
    model = tfp_flows.build(family, (4,), num_layers=8)
    z = _points(4, n=256)
    moved = np.abs(model.bijector.forward(z) - z)
    assert 1e-4 < np.max(moved) < 0.2
