"""TensorFlow's bijector test utility over every bijector of every family, trained-like weights.

`assert_bijective_and_finite` (the bijector test utility that TensorFlow ships; TFP's copy of
it is not in TFP's wheel) checks both round trips and that each log-det is minus the other
direction's, all finite; the Jacobian check compares each log-det with log|det| of the
autodiff Jacobian (as TFP's `get_fldj_theoretical`). Every trainable variable is moved off its
initial value first: the conditioners start at zero, where every coupling is the identity.
NSF's spline couplings are checked on vectors; on images NSF has RealNVP's layout, checked
here with affine couplings (a spline coupling's image Jacobians cost a minute on 2 cores).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from exactness import move_off_init
from tensorflow.python.ops.distributions import bijector_test_util
from tensorflow_probability import bijectors as tfb

import tfp_flows
from tfp_flows.bijectors import FlowBijector, MultiScale, Squeeze

FAMILIES = {
    "nice-vector": lambda: tfp_flows.nice((3,), num_couplings=2, hidden=8, num_hidden=1),
    "realnvp-vector": lambda: tfp_flows.realnvp((3,), num_couplings=2, hidden=8, num_hidden=1),
    "nsf-vector": lambda: tfp_flows.nsf((3,), num_couplings=2, hidden=8, num_hidden=1, bins=3),
    "glow-vector": lambda: tfp_flows.glow((3,), depth=2, hidden=8),
    "maf-vector": lambda: tfp_flows.maf((3,), num_layers=2, hidden=8),
    "iaf-vector": lambda: tfp_flows.iaf((3,), num_layers=2, hidden=8),
    "realnvp-image": lambda: tfp_flows.realnvp((4, 4, 1), num_scales=2, hidden=8,
                                               num_hidden=1),
    "glow-image": lambda: tfp_flows.glow((4, 4, 1), num_scales=2, depth=1, hidden=8),
    "glow-conditional": lambda: tfp_flows.glow((4, 4, 1), num_scales=2, depth=1, hidden=8,
                                               context_shape=(2,)),
}


class _Eager:
    """The utility's TF1 session, for eager tensors."""

    @staticmethod
    def run(fetches):
        return [np.asarray(f) for f in fetches]


class _Uncached:
    """`bijector` with a fresh tensor in every call: TFP's cache would otherwise hand back the
    input of `forward` to `inverse(forward(x))`, and the utility would check nothing."""

    def __init__(self, bijector):
        self._bijector = bijector

    def forward(self, x):
        return self._bijector.forward(tf.identity(x))

    def inverse(self, y):
        return self._bijector.inverse(tf.identity(y))

    def forward_log_det_jacobian(self, x, event_ndims):
        return self._bijector.forward_log_det_jacobian(tf.identity(x), event_ndims=event_ndims)

    def inverse_log_det_jacobian(self, y, event_ndims):
        return self._bijector.inverse_log_det_jacobian(tf.identity(y), event_ndims=event_ndims)


def _members(bijector, y):
    """(bijector, data-side input) of `bijector` and of every bijector inside it.

    `y` is a value on the bijector's data side; walking the inverse gives each member its own.
    """
    found = [(bijector, y)]
    if isinstance(bijector, FlowBijector):
        return _members(bijector.bijector, y)
    if isinstance(bijector, tfb.Composition):  # tfb.Chain of non-CompositeTensors is a _Chain
        found = []
        for member in bijector.bijectors:
            found += _members(member, y)
            y = member.inverse(y)
    elif isinstance(getattr(bijector, "bijector", None), tfb.Bijector):  # tfb.Invert's _Invert
        found += _members(bijector.bijector, bijector.inverse(y))
    elif isinstance(bijector, MultiScale):
        s = Squeeze().forward(y)
        found += _members(bijector.flow, s)
        if bijector.inner is not None:
            found += _members(bijector.inner, tf.split(bijector.flow.inverse(s), 2, -1)[0])
    return found


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_bijector_is_bijective_finite_and_its_log_det_is_the_jacobians(family, checks):
    keras.utils.set_random_seed(0)
    model = FAMILIES[family]()
    rng = np.random.default_rng(0)
    move_off_init(model.trainable_variables, 0.1, seed=rng)
    context = tf.constant(rng.normal(size=(1, 2)), tf.float32) if model.is_conditional else None
    shape = model.event_shape
    data = tf.constant(rng.normal(size=(3, *shape)), tf.float32)
    members = _members(model.flow.bijector(context), data)
    kinds = {type(b).__name__ for b, _ in members}
    assert kinds & {"Coupling", "MaskedAutoregressiveFlow"}, kinds
    rank = len(shape)
    for bijector, y in members:
        name = f"{type(bijector).__name__} ({bijector.name})"
        x = bijector.inverse(tf.identity(y)) + 0.1 * rng.normal(size=y.shape).astype("float32")
        try:
            bijector_test_util.assert_bijective_and_finite(
                _Uncached(bijector), x, y.numpy(), event_ndims=rank, atol=2e-4, rtol=2e-4,
                sess=_Eager)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None
        for method, log_det, value in [
                (bijector.forward, bijector.forward_log_det_jacobian, x),
                (bijector.inverse, bijector.inverse_log_det_jacobian, y)]:
            expected = checks.jacobian_log_det(method, tf.identity(value), rank)
            got = tf.broadcast_to(log_det(tf.identity(value), event_ndims=rank), expected.shape)
            np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3,
                                       err_msg=f"{name}: {method.__name__} log-det")
