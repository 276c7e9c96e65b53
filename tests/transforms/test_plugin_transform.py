"""A transform defined and registered here, outside the package, in every family that takes one.

`SinhArcsinh` (Jones and Pewsey's sinh-arcsinh map, two parameters per entry) is registered by
this module alone: the families take it by name, with its option, and a saved model names it.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from exactness import move_off_init

import tfp_flows
from tfp_flows import transforms


@tfp_flows.register_transform("sinh_arcsinh")
class SinhArcsinh(tfp_flows.Transform):
    """inverse: z = sinh(tail * asinh(x) - skew), tail = min_tail + softplus(raw + c) > 0."""

    params_per_entry = 2

    def __init__(self, min_tail: float = 0.1):
        if not isinstance(min_tail, float) or not 0.0 < min_tail < 1.0:
            raise ValueError(f"min_tail must be a float in (0, 1), got {min_tail!r}.")
        self.min_tail = min_tail

    def __call__(self, x, params, inverse):
        skew, raw = self.split(params)
        # The tail weight is 1 at raw = 0: zero parameters give the identity.
        offset = math.log(math.expm1(1.0 - self.min_tail))
        tail = self.min_tail + tf.nn.softplus(raw + offset)
        if inverse:
            u = tail * tf.asinh(x) - skew
            log_det = tf.math.log(tail * tf.cosh(u)) - 0.5 * tf.math.log1p(x * x)
            return tf.sinh(u), log_det
        u = (tf.asinh(x) + skew) / tail
        return tf.sinh(u), tf.math.log(tf.cosh(u) / tail) - 0.5 * tf.math.log1p(x * x)

    def get_config(self):
        return {"min_tail": self.min_tail}


BUILDERS = {
    "realnvp-vector": lambda **t: tfp_flows.realnvp((4,), num_couplings=2, hidden=8, **t),
    "realnvp-image": lambda **t: tfp_flows.realnvp((4, 4, 1), num_scales=2, hidden=4,
                                                   num_hidden=1, num_levels=17, **t),
    "glow-vector": lambda **t: tfp_flows.glow((4,), depth=2, hidden=8, **t),
    "glow-image": lambda **t: tfp_flows.glow((4, 4, 1), num_scales=1, depth=2, hidden=4,
                                             num_levels=17, **t),
    "maf": lambda **t: tfp_flows.maf((4,), num_layers=2, hidden=8, **t),
    "iaf": lambda **t: tfp_flows.iaf((3,), num_layers=2, hidden=8, **t),
}


def _model(name, **transform):
    keras.utils.set_random_seed(3)
    model = BUILDERS[name](**(transform or {"transform": "sinh_arcsinh"}))
    move_off_init(model.trainable_variables, 0.1)  # off the identity the conditioners start at
    return model


def _data(model, n=3):
    rng = np.random.default_rng(1)
    shape = (n, *model.event_shape)
    if model.flow.num_levels is None:
        return rng.standard_normal(shape).astype("float32")
    return (rng.integers(0, 17, size=shape) + rng.random(shape)).astype("float32")


def _brute_force_log_prob(model, x):
    """log N(z; 0, I) + log|det dz/dx|, the Jacobian from autodiff."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = model.encode(x)
    n, size = x.shape[0], int(np.prod(x.shape[1:]))
    jacobian = tf.reshape(tape.batch_jacobian(z, x), (n, -1, size))
    z = tf.reshape(z, (n, -1))
    base = -0.5 * tf.reduce_sum(z**2, axis=1) - 0.5 * size * np.log(2 * np.pi)
    return base + tf.linalg.slogdet(jacobian)[1]


def test_the_transform_is_its_own_inverse_with_the_autodiff_log_det():
    transform = transforms.get("sinh_arcsinh", min_tail=0.2)
    rng = np.random.default_rng(5)
    x = tf.constant(2.0 * rng.normal(size=(7, 3)), tf.float64)
    params = tf.constant(rng.normal(size=(7, 6)), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z, log_det = transform(x, params, inverse=True)
    back, back_log_det = transform(z, params, inverse=False)
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(log_det, np.log(np.abs(tape.gradient(z, x))), rtol=1e-9)
    np.testing.assert_allclose(back_log_det, -log_det, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_family_takes_it_by_name_with_an_exact_density(name):
    model = _model(name)
    assert isinstance(model.flow.transform, SinhArcsinh)
    x = _data(model)
    np.testing.assert_allclose(model.decode(tf.identity(model.encode(x))), x, rtol=1e-4,
                               atol=1e-3)
    log_prob = model.log_prob(x)
    np.testing.assert_allclose(log_prob, _brute_force_log_prob(model, x), rtol=1e-4, atol=1e-3)
    # Off the identity: the weights moved the density away from the untrained model's.
    keras.utils.set_random_seed(3)
    untrained = BUILDERS[name](transform="sinh_arcsinh")
    assert np.max(np.abs(untrained.log_prob(x) - log_prob)) > 1e-2


@pytest.mark.parametrize("name", ["realnvp-image", "glow-vector", "maf"])
@pytest.mark.kernel_independent
def test_a_saved_model_names_it_and_reloads_with_the_same_density(name, tmp_path):
    model = _model(name, transform={"name": "sinh_arcsinh", "min_tail": 0.25})
    assert model.flow.get_config()["transform"] == {"name": "sinh_arcsinh", "min_tail": 0.25}
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.flow.transform, SinhArcsinh)
    assert loaded.flow.transform.min_tail == 0.25
    x = _data(model)
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_config_round_trips(name):
    flow = BUILDERS[name](transform=SinhArcsinh(min_tail=0.5)).flow
    config = flow.get_config()
    again = tfp_flows.FlowModel(type(flow).from_config(config)).flow
    assert again.get_config() == config
    assert [v.shape for v in again.weights] == [v.shape for v in flow.weights]


@pytest.mark.parametrize("kwargs, message", [
    ({"transform": "sinh_arcsinh", "bins": 4},
     "'sinh_arcsinh' takes no option 'bins'; its options: min_tail"),
    ({"transform": "sinh_arcsinh", "scale_fn": "tanh"},
     "'sinh_arcsinh' takes no option 'scale_fn'"),
    ({"transform": SinhArcsinh(), "scale_fn": "tanh"},
     "scale_fn apply to a transform given by name"),
    ({"transform": {"name": "sinh_arcsinh"}, "bins": 3}, "bins apply to a transform given"),
    ({"transform": {"name": "sinh_arcsinh", "min_tail": 2.0}},
     r"min_tail must be a float in \(0, 1\), got 2.0"),
])
def test_options_it_does_not_take_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfp_flows.realnvp((4,), hidden=8, **kwargs)


def test_a_family_refuses_an_unregistered_transform_when_built():
    class Unnamed(SinhArcsinh):
        pass

    # Refused at construction: the config of a model saved after training could not name it.
    with pytest.raises(ValueError, match="Unnamed is not a registered transform"):
        tfp_flows.realnvp((4,), hidden=8, transform=Unnamed())
