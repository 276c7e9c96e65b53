"""MirroredStrategy over the two logical CPUs of conftest.py trains like a single device."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_flows

GLOBAL_BATCH = 16
STEPS = 4

VECTOR = (4,)
IMAGE = (8, 8, 1)

# (builder, event shape, optimizer). Glow trains on pixels in [0, 17), whose NLL gradients are
# large; Adam is only used where it is well conditioned: on the tiny Glow, 4 Adam steps turn a
# 1e-7 relative change of the initial weights into 2e-2 changes of the weights on a single
# device, which no comparison of two runs can tell from a bug.
CASES = {
    "nice": (lambda: tfp_flows.nice(VECTOR, num_couplings=2, hidden=16, num_hidden=1), VECTOR,
             lambda: keras.optimizers.SGD(0.05)),
    "realnvp": (lambda: tfp_flows.realnvp(VECTOR, num_couplings=2, hidden=16, num_hidden=1),
                VECTOR, lambda: keras.optimizers.SGD(0.05)),
    "realnvp_adam": (lambda: tfp_flows.realnvp(VECTOR, num_couplings=2, hidden=16, num_hidden=1),
                     VECTOR, lambda: keras.optimizers.Adam(1e-2)),
    # A learned base: its weights train (and mirror) with the flow's.
    "realnvp_mixture_base": (
        lambda: tfp_flows.realnvp(VECTOR, num_couplings=2, hidden=16, num_hidden=1,
                                  base={"name": "gaussian_mixture", "num_components": 2}),
        VECTOR, lambda: keras.optimizers.SGD(0.05)),
    "glow": (lambda: tfp_flows.glow(IMAGE, num_scales=2, depth=1, hidden=8, num_levels=17), IMAGE,
             lambda: keras.optimizers.SGD(1e-2)),
    "maf": (lambda: tfp_flows.maf(VECTOR, num_layers=2, hidden=16, num_hidden=1), VECTOR,
            lambda: keras.optimizers.SGD(0.05)),
    "iaf": (lambda: tfp_flows.iaf(VECTOR, num_layers=2, hidden=16, num_hidden=1), VECTOR,
            lambda: keras.optimizers.SGD(0.05)),
}


@pytest.fixture(scope="module")
def strategy():
    # One strategy for the module: a second MirroredStrategy in the same process can abort its
    # collectives ("Collective ops is aborted by: Shape mismatch"), and ReductionToOneDevice
    # avoids them altogether on CPU.
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2, "tests/conftest.py configures two logical CPU devices"
    return tf.distribute.MirroredStrategy(
        devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def _data(event_shape, n=GLOBAL_BATCH * STEPS):
    rng = np.random.default_rng(0)
    if len(event_shape) == 3:
        return (rng.integers(0, 17, size=(n, *event_shape))
                + rng.random((n, *event_shape))).astype("float32")
    return rng.normal(size=(n, *event_shape)).astype("float32")


def _single_and_mirrored(strategy, build, make_optimizer=None):
    """Two models with the same initial weights, one built in the strategy's scope."""
    keras.utils.set_random_seed(0)
    single = build()
    with strategy.scope():
        mirrored = build()
        mirrored.set_weights(single.get_weights())
    if make_optimizer is not None:
        single.compile(make_optimizer())
        with strategy.scope():
            mirrored.compile(make_optimizer())
    return single, mirrored


@pytest.mark.parametrize("name", list(CASES))
def test_fit_matches_single_device(strategy, name):
    build, event_shape, make_optimizer = CASES[name]
    x = _data(event_shape)
    single, mirrored = _single_and_mirrored(strategy, build, make_optimizer)
    initial = single.get_weights()
    # The single-device run goes first, so state that a strategy run left behind would show.
    single.fit(x, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    mirrored.fit(x, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)

    assert mirrored.distribute_strategy is strategy
    assert int(mirrored.optimizer.iterations.numpy()) == STEPS
    expected = single.get_weights()
    moved = max(np.max(np.abs(w.astype(np.float64) - w0))
                for v, w, w0 in zip(single.weights, expected, initial, strict=True) if v.trainable)
    assert moved > 1e-2, "training must move the weights well beyond the tolerance"
    for variable, got, want in zip(single.weights, mirrored.get_weights(), expected,
                                   strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=variable.path)


def _first_actnorm_statistics(x):
    """loc and log_scale that Glow's first ActNorm gets from `x`, computed by hand.

    With 17 pixel levels the model centres the pixels (x / 17 - 1/2) and squeezes them
    (space-to-depth) before its first ActNorm.
    """
    h = tf.nn.space_to_depth(x / 17.0 - 0.5, 2).numpy().astype(np.float64)
    mean = h.mean(axis=(0, 1, 2))
    return mean, 0.5 * np.log(h.var(axis=(0, 1, 2)) + 1e-6)


def test_actnorm_initialisation_is_all_reduced(strategy):
    build, event_shape, _ = CASES["glow"]
    x = _data(event_shape, n=GLOBAL_BATCH)
    single, mirrored = _single_and_mirrored(strategy, build)
    single.initialize_from_data(x, GLOBAL_BATCH)
    mirrored.initialize_from_data(x, GLOBAL_BATCH)

    assert bool(mirrored.data_initialized.numpy())
    actnorm = [i for i, v in enumerate(single.weights) if "actnorm" in v.path]
    assert len(actnorm) == 4
    for i in actnorm:
        # Every replica holds the single-device values.
        replicas = mirrored.weights[i].value.values
        assert len(replicas) == 2
        for replica in replicas:
            np.testing.assert_allclose(replica.numpy(), single.weights[i].numpy(), rtol=1e-5,
                                       atol=1e-6, err_msg=single.weights[i].path)
    # Those are the statistics of the global batch, which differ from either replica's half.
    # Row 0 of the first level's stacked ActNorm variables: the flow's first step.
    loc, log_scale = (mirrored.weights[i].numpy()[0] for i in actnorm[:2])
    np.testing.assert_allclose(np.stack([loc, log_scale]),
                               np.stack(_first_actnorm_statistics(x)), rtol=1e-4, atol=1e-5)
    for half in (x[:GLOBAL_BATCH // 2], x[GLOBAL_BATCH // 2:]):
        assert np.max(np.abs(_first_actnorm_statistics(half)[0] - loc)) > 1e-3

    # The initialisation runs once: functions traced afterwards, by either model, only read
    # the parameters.
    before = [single.get_weights(), mirrored.get_weights()]
    for model, weights in zip((single, mirrored), before, strict=True):
        tf.function(model.log_prob)(x[::-1] * 0.5)
        for got, want in zip(model.get_weights(), weights, strict=True):
            np.testing.assert_array_equal(got, want)


def test_a_mirrored_model_exports_for_serving(strategy, tmp_path):
    build, event_shape, _ = CASES["glow"]
    x = _data(event_shape, n=GLOBAL_BATCH)
    _, mirrored = _single_and_mirrored(strategy, build)
    mirrored.initialize_from_data(x, GLOBAL_BATCH)
    # Inside the scope, as a training script that exports at its end would.
    with strategy.scope():
        tfp_flows.export_saved_model(mirrored, tmp_path / "1")
    served = tf.saved_model.load(str(tmp_path / "1")).signatures["log_prob"]
    np.testing.assert_allclose(served(x=tf.constant(x))["log_prob"], mirrored.log_prob(x),
                               rtol=1e-5)
