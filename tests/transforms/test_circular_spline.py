"""The circular spline: a smooth bijection of the circle, exact in a RealNVP on the torus."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from exactness import move_off_init

import tfp_flows
from tfp_flows import transforms
from tfp_flows.transforms import CircularSplineTransform


def _params(transform, shape, seed=0):
    rng = np.random.default_rng(seed)
    size = transform.params_per_entry * shape[-1]
    return tf.constant(rng.normal(size=(*shape[:-1], size)), tf.float64)


def _angles(shape, seed=1):
    return tf.constant(np.random.default_rng(seed).uniform(-math.pi, math.pi, size=shape),
                       tf.float64)


def _circular_distance(a, b):
    return np.abs(np.mod(np.asarray(a) - np.asarray(b) + math.pi, 2 * math.pi) - math.pi)


@pytest.mark.parametrize("rotation", [True, False])
def test_it_is_a_bijection_of_the_circle_with_the_autodiff_log_det(rotation):
    transform = transforms.get("circular_spline", bins=5, rotation=rotation)
    assert transform.params_per_entry == (16 if rotation else 15)
    x = _angles((64, 3))
    params = _params(transform, (64, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        z, log_det = transform(x, params, inverse=True)
    np.testing.assert_allclose(log_det, np.log(tape.gradient(z, x)), rtol=1e-9, atol=1e-12)
    with tf.GradientTape() as tape:
        tape.watch(z)
        back, back_log_det = transform(z, params, inverse=False)
    np.testing.assert_allclose(back_log_det, np.log(tape.gradient(back, z)), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(back_log_det, -log_det, atol=1e-9)
    for angles in (z, back):
        assert np.all(angles >= -math.pi) and np.all(angles < math.pi)
    # Inputs and outputs are angles: equal modulo 2 pi (-pi and a hair below pi are neighbours).
    np.testing.assert_array_less(_circular_distance(back, x), 1e-9)
    # Off the identity: the parameters moved the angles and the density.
    assert np.max(_circular_distance(z, x)) > 0.1 and np.max(np.abs(log_det)) > 0.1


def test_the_spline_fixes_the_ends_with_one_slope_at_both():
    transform = transforms.get("circular_spline", bins=6, rotation=False)
    params = tf.repeat(_params(transform, (5, 1), seed=4), 2, axis=0)  # a pair per spline
    ends = tf.constant([[-math.pi], [math.pi]] * 5, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(ends)
        y, log_det = transform.circle_map(ends, params)
    np.testing.assert_allclose(y, ends, atol=1e-12)
    slopes = tape.gradient(y, ends).numpy().reshape(5, 2)
    np.testing.assert_allclose(slopes[:, 0], slopes[:, 1], rtol=1e-9)
    np.testing.assert_allclose(np.log(slopes).ravel(), log_det[:, 0], rtol=1e-9)
    # The boundary slope is learned, not TFP's fixed 1.
    assert np.min(np.abs(np.log(slopes))) > 0.01
    # Without the rotation the transform itself fixes -pi.
    z, _ = transform(ends[::2], params[::2], inverse=True)
    np.testing.assert_allclose(z, ends[::2], atol=1e-12)


def test_with_the_rotation_it_is_continuous_and_smooth_across_the_seam():
    transform = transforms.get("circular_spline", bins=4)
    params = _params(transform, (1, 1), seed=7)
    eps = 1e-6
    x = tf.constant([[-math.pi + eps], [math.pi - eps]], tf.float64)
    params = tf.concat([params, params], axis=0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z, log_det = transform(x, params, inverse=True)
    slopes = tape.gradient(z, x).numpy().ravel()
    # The two sides of the seam land 2 eps * slope apart on the circle, not further.
    assert _circular_distance(z[0], z[1])[0] < 2 * eps * slopes.max() * 1.01
    np.testing.assert_allclose(slopes[0], slopes[1], rtol=1e-4)
    np.testing.assert_allclose(log_det[0], log_det[1], rtol=1e-4)


@pytest.mark.parametrize("rotation", [True, False])
def test_zero_parameters_give_the_identity(rotation):
    transform = CircularSplineTransform(bins=3, rotation=rotation)
    x = _angles((5, 2))
    params = tf.zeros((5, 2 * transform.params_per_entry), tf.float64)
    for inverse in (True, False):
        y, log_det = transform(x, params, inverse=inverse)
        np.testing.assert_allclose(y, x, atol=1e-12)
        np.testing.assert_allclose(log_det, 0.0, atol=1e-12)


def _torus_model(**kwargs):
    keras.utils.set_random_seed(2)
    model = tfp_flows.realnvp((2,), num_couplings=2, hidden=8, num_hidden=1,
                              transform="circular_spline", **kwargs)
    move_off_init(model.trainable_variables, 0.3)  # off the identity the conditioners start at
    return model


def _brute_force_log_prob(model, x):
    """log N(z; 0, I) + log|det dz/dx|, the Jacobian from autodiff."""
    @tf.function  # traced once: eager, the tape over TFP's splines took 20-50 s here
    def encode_and_jacobian(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = model.encode(x)
        return z, tape.batch_jacobian(z, x)

    z, jacobian = encode_and_jacobian(tf.convert_to_tensor(x))
    base = -0.5 * tf.reduce_sum(z**2, axis=1) - math.log(2 * math.pi)
    return base + tf.linalg.slogdet(jacobian)[1]


def test_a_realnvp_on_the_torus_is_exact_and_stays_on_it():
    model = _torus_model(bins=5)
    assert isinstance(model.flow.transform, CircularSplineTransform)
    x = _angles((16, 2)).numpy().astype("float32")
    log_prob = model.log_prob(x)
    np.testing.assert_allclose(log_prob, _brute_force_log_prob(model, x), rtol=1e-4, atol=1e-4)
    z = model.encode(x)
    assert np.all(np.abs(z) <= math.pi)
    np.testing.assert_array_less(_circular_distance(model.decode(z), x), 1e-4)
    # Off the identity (the untrained flow's density is the base's, log N(x; 0, I)).
    identity = -0.5 * np.sum(x**2, axis=1) - math.log(2 * math.pi)
    assert np.max(np.abs(identity - log_prob)) > 0.1
    samples = model.sample(200, seed=3).numpy()
    assert np.all(samples >= -math.pi) and np.all(samples < math.pi)


@pytest.mark.kernel_independent
def test_a_saved_torus_model_reloads_with_the_same_density(tmp_path):
    model = _torus_model(bins=3)
    assert model.flow.get_config()["transform"] == {"name": "circular_spline", "bins": 3,
                                                    "rotation": True}
    path = str(tmp_path / "torus.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = _angles((8, 2)).numpy().astype("float32")
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))


def test_the_config_round_trips():
    transform = {"name": "circular_spline", "bins": 4, "rotation": False}
    flow = tfp_flows.realnvp((2,), num_couplings=2, hidden=4, transform=transform).flow
    config = flow.get_config()
    assert config["transform"] == transform
    again = tfp_flows.FlowModel(type(flow).from_config(config)).flow
    assert again.get_config() == config
    assert [v.shape for v in again.weights] == [v.shape for v in flow.weights]


@pytest.mark.parametrize("options, message", [
    ({"bins": 1}, "bins must be an integer >= 2, got 1"),
    ({"bins": 4.0}, "bins must be an integer >= 2, got 4.0"),
    ({"bins": True}, "bins must be an integer >= 2, got True"),
    ({"rotation": 1}, "rotation must be True or False, got 1"),
    ({"bound": 3.0}, "'circular_spline' takes no option 'bound'; its options: bins, rotation"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        transforms.get("circular_spline", **options)
    with pytest.raises(ValueError, match=message):
        tfp_flows.realnvp((2,), num_couplings=2, hidden=4,
                          transform={"name": "circular_spline", **options})


@pytest.mark.parametrize("options, message", [
    ({"bins": 1}, "bins must be an integer >= 2, got 1"),
    ({"bound": 3.0}, "'circular_spline' takes no option 'bound'"),
])
def test_the_family_shortcuts_are_checked_too(options, message):
    with pytest.raises(ValueError, match=message):
        tfp_flows.realnvp((2,), num_couplings=2, hidden=4, transform="circular_spline",
                          **options)
