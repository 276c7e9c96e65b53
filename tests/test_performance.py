"""Training performance: one trace per fit, one pass per conditioner, XLA and mixed precision."""

import collections
import contextlib
import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_flows
from tfp_flows import FlowModel
from tfp_flows.nets import MADE, MLP, ConvNet

BATCH = 8
STEPS = 4

# Small sizes: two conditioners of one hidden layer show one trace, one pass per network and
# the XLA step as well as the families' defaults (4-5 layers of 2) did, at a fraction of the
# tracing and XLA compilation. Glow keeps depth 2: its stacked step networks (one per level,
# `copies` = depth) must run once per copy.
BUILDERS = {
    "nice": lambda: tfp_flows.nice((4,), num_couplings=2, hidden=16, num_hidden=1),
    "realnvp": lambda: tfp_flows.realnvp((4,), num_couplings=2, hidden=16, num_hidden=1),
    "realnvp_image": lambda: tfp_flows.realnvp((4, 4, 1), num_scales=2, hidden=8, num_hidden=1,
                                               num_levels=17),
    "glow": lambda: tfp_flows.glow((4, 4, 1), num_scales=2, depth=2, hidden=8, num_levels=17),
    "maf": lambda: tfp_flows.maf((4,), num_layers=2, hidden=16, num_hidden=1),
    "iaf": lambda: tfp_flows.iaf((4,), num_layers=2, hidden=16, num_hidden=1),
}

# In these flows the training direction is one pass: every network runs once per log_prob.
# IAF's density is sequential by design (one MADE pass per dimension).
ONE_PASS = ("nice", "realnvp", "realnvp_image", "glow", "maf")


def _data(model: FlowModel, n: int = BATCH * STEPS, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, *model.event_shape)
    if model.flow.num_levels is None:
        return rng.standard_normal(shape).astype("float32")
    return (rng.integers(0, 17, shape) + rng.random(shape)).astype("float32")


@contextlib.contextmanager
def _counting_traces():
    """Counts Python executions of `FlowModel.train_step` (each is one trace) and, inside
    them, the calls of every conditioner network (keyed by layer)."""
    record = {"traces": 0, "calls": collections.Counter()}
    inside = []
    train_step = FlowModel.train_step

    @functools.wraps(train_step)
    def counted_train_step(self, data):
        record["traces"] += 1
        inside.append(True)
        try:
            return train_step(self, data)
        finally:
            inside.pop()

    def counted_call(call):
        @functools.wraps(call)
        def wrapper(self, *args, **kwargs):
            if inside:
                record["calls"][id(self)] += 1
            return call(self, *args, **kwargs)
        return wrapper

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FlowModel, "train_step", counted_train_step)
        for layer in (MLP, ConvNet, MADE):
            patch.setattr(layer, "call", counted_call(layer.call))
        yield record


@pytest.fixture(scope="module", params=list(BUILDERS))
def fitted(request):
    """A flow fitted for 3 epochs of 4 steps while traces and network calls were counted."""
    keras.utils.set_random_seed(0)
    with _counting_traces() as record:
        model = BUILDERS[request.param]()
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        history = model.fit(_data(model), batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
    return request.param, model, history, record


def test_fit_traces_train_step_once(fitted):
    _, _, history, record = fitted
    assert len(history.history["loss"]) == 3
    assert record["traces"] == 1


@pytest.mark.parametrize("fitted", ONE_PASS, indirect=True)
def test_train_step_runs_each_conditioner_once(fitted):
    _, model, _, record = fitted
    nets = model.flow.conditioners
    assert nets
    # Stacked networks (Glow's, one per level) run once per copy.
    assert {id(net): getattr(net, "copies", None) or 1 for net in nets} == dict(record["calls"])


def test_a_partial_last_batch_does_not_retrace():
    keras.utils.set_random_seed(0)
    with _counting_traces() as record:
        model = BUILDERS["realnvp"]()
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.fit(_data(model, n=BATCH * STEPS + 3), batch_size=BATCH, epochs=3, verbose=0)
    assert record["traces"] == 1


@pytest.mark.parametrize("name", list(BUILDERS))
def test_jit_compiled_fit_takes_the_eager_gradient_step(name):
    learning_rate = 0.05
    keras.utils.set_random_seed(0)
    model = BUILDERS[name]()
    x = _data(model, n=BATCH)
    model.initialize_from_data(x)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.log_prob(x))
    # Dense: Glow's stacked step weights, read row by row, get sparse gradients.
    gradients = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
    expected = [v.numpy() - learning_rate * g.numpy()
                for v, g in zip(model.trainable_variables, gradients, strict=True)]

    model.compile(optimizer=keras.optimizers.SGD(learning_rate), jit_compile=True)
    history = model.fit(x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    assert model.jit_compile
    np.testing.assert_allclose(history.history["loss"][0], float(loss), rtol=1e-4)
    assert any(np.any(g.numpy() != 0) for g in gradients)
    for variable, want in zip(model.trainable_variables, expected, strict=True):
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-3, atol=1e-5)


@pytest.fixture
def float32_policy_after():
    yield
    keras.mixed_precision.set_global_policy("float32")


def _train_realnvp(policy: str, x: np.ndarray, steps: int) -> tuple[FlowModel, float, float]:
    """Trains a RealNVP under `policy`; returns it with its NLL on `x` before and after."""
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = tfp_flows.realnvp((4,), hidden=32)
    before = float(-tf.reduce_mean(model.log_prob(x)))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(x, batch_size=64, epochs=steps * 64 // len(x), shuffle=False, verbose=0)
    return model, before, float(-tf.reduce_mean(model.log_prob(x)))


def test_mixed_bfloat16_runs_networks_in_bf16_and_matches_float32(float32_policy_after):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((256, 4))
    x = np.stack([z[:, 0], z[:, 1] + z[:, 0] ** 2, np.sin(z[:, 2]), z[:, 3] * z[:, 0]],
                 axis=1).astype("float32")
    _, initial, nll32 = _train_realnvp("float32", x, steps=40)
    mixed, _, nll16 = _train_realnvp("mixed_bfloat16", x, steps=40)

    net = mixed.flow.conditioners[0]
    assert net.compute_dtype == "bfloat16"
    assert net(tf.constant(x[:2, :2])).dtype == tf.bfloat16
    assert all(v.dtype == "float32" for v in mixed.trainable_variables)
    assert mixed.log_prob(x[:2]).dtype == tf.float32
    assert nll32 < initial - 1.0  # the comparison is made after real training
    assert nll16 == pytest.approx(nll32, rel=0.01)
