"""Checks shared by the bijector tests: brute-force log-dets, round trips, graph and XLA modes.

Every bijector maps latent z -> data x with `forward`. TFP caches results by tensor identity,
so each check hands the bijector a fresh tensor (`tf.identity`) where reusing one would let the
cache return the original input instead of computing anything.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_probability import distributions as tfd

TOLERANCES = {tf.float32: {"rtol": 1e-4, "atol": 1e-4}, tf.float64: {"rtol": 1e-9, "atol": 1e-9}}


@pytest.fixture(scope="session", params=[tf.float32, tf.float64], ids=["float32", "float64"])
def dtype(request) -> tf.DType:
    """Every test that takes `dtype` runs in single and double precision."""
    return request.param


@pytest.fixture(scope="session")
def tol(dtype) -> dict:
    """`rtol`/`atol` for comparing values computed in `dtype` by different routes."""
    return TOLERANCES[dtype]


def _event_split(shape: tf.TensorShape, event_ndims: int) -> tuple[list[int], list[int]]:
    rank = shape.rank
    return shape[:rank - event_ndims].as_list(), shape[rank - event_ndims:].as_list()


def jacobian_log_det(fn: Callable, x: tf.Tensor, event_ndims: int) -> tf.Tensor:
    """log|det d fn(x) / d x| per event, from the dense autodiff Jacobian.

    The batch dimensions of `x` are flattened into one, the Jacobian of each event is
    reshaped to (D, D) and its log|det| comes from `tf.linalg.slogdet`.
    """
    batch_shape, event_shape = _event_split(x.shape, event_ndims)
    size = int(np.prod(event_shape))
    flat = tf.reshape(x, [-1, *event_shape])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(flat)
        y = tf.reshape(fn(tf.reshape(flat, x.shape)), [flat.shape[0], -1])
    # A loop of gradients is faster than pfor's vectorisation for these small events.
    jacobian = tape.batch_jacobian(y, flat, experimental_use_pfor=False)
    jacobian = tf.reshape(jacobian, [-1, size, size])
    return tf.reshape(tf.linalg.slogdet(jacobian)[1], batch_shape)


def _assert_close(actual, expected, tol: dict, what: str) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), err_msg=what, **tol)


def assert_bijector_properties(bijector, z: tf.Tensor, x: tf.Tensor, event_ndims: int,
                               tol: dict, log_det_atol: float | None = None) -> None:
    """Round trips both ways, both log-dets against brute force, and their agreement.

    `z` is a latent and `x` a data tensor with the same batch shape. Log-dets, and the
    `log_prob` of a `TransformedDistribution` over the bijector, must have that batch shape,
    except that a constant-Jacobian bijector's log-dets may only broadcast to it (TFP's
    convention, e.g. `tfb.Scale`). `log_det_atol` loosens the comparison with
    `slogdet`, whose error grows with the event size.
    """
    batch_shape, _ = _event_split(x.shape, event_ndims)
    ld_tol = dict(tol) if log_det_atol is None else {**tol, "atol": log_det_atol}

    forward_z = bijector.forward(tf.identity(z))
    _assert_close(bijector.inverse(tf.identity(forward_z)), z, tol, "inverse(forward(z)) != z")
    _assert_close(bijector.forward(tf.identity(bijector.inverse(tf.identity(x)))), x, tol,
                  "forward(inverse(x)) != x")

    ildj = bijector.inverse_log_det_jacobian(tf.identity(x), event_ndims=event_ndims)
    fldj = bijector.forward_log_det_jacobian(tf.identity(z), event_ndims=event_ndims)
    batch = tf.TensorShape(batch_shape)
    for log_det in (ildj, fldj):
        if bijector.is_constant_jacobian:
            assert tf.broadcast_static_shape(log_det.shape, batch) == batch
        else:
            assert log_det.shape == batch_shape
    assert ildj.dtype == x.dtype and fldj.dtype == z.dtype
    _assert_close(tf.broadcast_to(ildj, batch_shape),
                  jacobian_log_det(bijector.inverse, x, event_ndims), ld_tol,
                  "inverse log-det != brute force")
    _assert_close(tf.broadcast_to(fldj, batch_shape),
                  jacobian_log_det(bijector.forward, z, event_ndims), ld_tol,
                  "forward log-det != brute force")
    _assert_close(
        fldj, -bijector.inverse_log_det_jacobian(tf.identity(forward_z), event_ndims=event_ndims),
        ld_tol, "fldj(z) != -ildj(forward(z))")
    # What users see: log_prob has the batch shape, whatever shape the log-dets broadcast from.
    latent_event = z.shape[z.shape.rank - event_ndims:]
    base = tfd.Sample(tfd.Normal(tf.constant(0.0, z.dtype), 1.0), latent_event)
    log_prob = tfd.TransformedDistribution(base, bijector).log_prob(tf.identity(x))
    assert log_prob.shape == batch_shape


def assert_same_eager_graph_xla(bijector, z: tf.Tensor, x: tf.Tensor, event_ndims: int,
                                tol: dict, xla: bool = True) -> None:
    """forward, inverse and both log-dets agree eagerly, in `tf.function` and under XLA.

    XLA compiles take seconds, so `xla=False` leaves them out where another test has one.
    """

    def run(z, x):
        return (bijector.forward(z), bijector.inverse(x),
                bijector.forward_log_det_jacobian(z, event_ndims=event_ndims),
                bijector.inverse_log_det_jacobian(x, event_ndims=event_ndims))

    eager = run(tf.identity(z), tf.identity(x))
    for jit_compile in (False, True) if xla else (False,):
        traced = tf.function(run, jit_compile=jit_compile)(tf.identity(z), tf.identity(x))
        for name, got, want in zip(("forward", "inverse", "fldj", "ildj"), traced, eager,
                                   strict=True):
            _assert_close(got, want, tol, f"{name} differs with jit_compile={jit_compile}")


def random_conditioner(in_channels: int, out_channels: int, dtype: tf.DType, seed: int,
                       image: bool, hidden: int = 8) -> Callable[[tf.Tensor], tf.Tensor]:
    """A deterministic two-layer net in `dtype` with random weights, as a plain callable.

    For images it is two 3x3 convolutions, so that every output pixel depends on its
    neighbours (a checkerboard coupling then really conditions on other positions); for
    vectors two dense layers. The weights are small enough to keep couplings well conditioned.
    """
    rng = np.random.default_rng(seed)
    shapes = ([(3, 3, in_channels, hidden), (3, 3, hidden, out_channels)] if image
              else [(in_channels, hidden), (hidden, out_channels)])
    first, second = (tf.constant(rng.normal(scale=0.3, size=s), dtype=dtype) for s in shapes)
    bias = tf.constant(rng.normal(scale=0.3, size=[out_channels]), dtype=dtype)

    def conditioner(inputs: tf.Tensor) -> tf.Tensor:
        if image:
            hidden_out = tf.tanh(tf.nn.conv2d(inputs, first, 1, "SAME"))
            return tf.nn.conv2d(hidden_out, second, 1, "SAME") + bias
        return tf.tanh(inputs @ first) @ second + bias

    return conditioner


def coupling_conditioner(mask: str, parity: int, event_shape: tuple, params_per_dim: int,
                         dtype: tf.DType, seed: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """A `random_conditioner` of the sizes a coupling with this mask and parity expects.

    `params_per_dim` is 1 for an additive coupling (a shift), 2 for an affine one.
    """
    channels = event_shape[-1]
    if mask == "checkerboard":
        sizes = (channels, channels)
    else:
        first = channels // 2
        sizes = (first, channels - first) if parity == 0 else (channels - first, first)
    return random_conditioner(sizes[0], params_per_dim * sizes[1], dtype, seed,
                              image=len(event_shape) == 3)


def assert_conditioning_part_unchanged(bijector, x: tf.Tensor, mask: str, parity: int) -> None:
    """Both directions copy the conditioning part and change the transformed part."""
    x = x.numpy()
    if mask == "checkerboard":
        rows, cols = np.meshgrid(np.arange(x.shape[-3]), np.arange(x.shape[-2]), indexing="ij")
        conditioning = np.broadcast_to(((rows + cols + parity) % 2 == 0)[..., None], x.shape)
    else:
        channels = x.shape[-1]
        first = np.arange(channels) < channels // 2
        conditioning = np.broadcast_to(first if parity == 0 else ~first, x.shape)
    for direction in (bijector.forward, bijector.inverse):
        y = direction(tf.constant(x)).numpy()
        np.testing.assert_array_equal(y[conditioning], x[conditioning])
        assert np.all(y[~conditioning] != x[~conditioning])


class CountingConditioner:
    """Wraps a conditioner and counts its calls (eagerly, one count per evaluation)."""

    def __init__(self, conditioner: Callable):
        self.conditioner = conditioner
        self.calls = 0

    def __call__(self, inputs):
        self.calls += 1
        return self.conditioner(inputs)


def assert_conditioner_runs_once_per_log_prob(make_bijector: Callable, conditioner: Callable,
                                              x: tf.Tensor, event_ndims: int) -> None:
    """`make_bijector(counting_conditioner)` evaluates its network once per `log_prob`."""
    counting = CountingConditioner(conditioner)
    base = tfd.Sample(tfd.Normal(tf.constant(0.0, x.dtype), 1.0), x.shape[-event_ndims:])
    distribution = tfd.TransformedDistribution(base, make_bijector(counting))
    log_prob = distribution.log_prob(x)
    assert counting.calls == 1
    assert log_prob.shape == x.shape[:-event_ndims]


def randomize_weights(layer: keras.layers.Layer, seed: int, scale: float = 0.3) -> None:
    """Overwrites every weight of a built layer, including its zero-initialised last layer."""
    assert layer.weights, "build the layer (call it once) before randomising its weights"
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(scale=scale, size=weight.shape).astype(weight.dtype))


class _Checks:
    jacobian_log_det = staticmethod(jacobian_log_det)
    bijector_properties = staticmethod(assert_bijector_properties)
    same_eager_graph_xla = staticmethod(assert_same_eager_graph_xla)
    random_conditioner = staticmethod(random_conditioner)
    conditioning_part_unchanged = staticmethod(assert_conditioning_part_unchanged)
    conditioner_runs_once_per_log_prob = staticmethod(assert_conditioner_runs_once_per_log_prob)
    coupling_conditioner = staticmethod(coupling_conditioner)
    randomize_weights = staticmethod(randomize_weights)
    CountingConditioner = CountingConditioner


@pytest.fixture(scope="session")
def checks() -> type[_Checks]:
    """The shared checks, as one namespace, so test modules need not import the conftest."""
    return _Checks
