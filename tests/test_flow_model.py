"""FlowModel: Keras integration, saving, units and the errors users see."""

import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_flows

# Small sizes: two layers of one hidden layer (NICE keeps its default 4 couplings) behave
# in Keras, on disk and in their errors as the families' 5 layers of 2 do, and trace faster.
BUILDERS = {
    "nice": lambda: tfp_flows.nice((4,), hidden=8, num_hidden=1),
    "realnvp": lambda: tfp_flows.realnvp((4,), num_couplings=2, hidden=8, num_hidden=1),
    "glow": lambda: tfp_flows.glow((4, 4, 1), num_scales=2, depth=1, hidden=8, num_levels=17),
    "maf": lambda: tfp_flows.maf((4,), num_layers=2, hidden=8, num_hidden=1),
    "iaf": lambda: tfp_flows.iaf((4,), num_layers=2, hidden=8, num_hidden=1),
}


def _data(model, n=64, seed=0):
    rng = np.random.default_rng(seed)
    if model.flow.num_levels:
        levels = model.flow.num_levels
        return (rng.integers(0, levels, (n, *model.event_shape))
                + rng.random((n, *model.event_shape))).astype("float32")
    return rng.standard_normal((n, *model.event_shape)).astype("float32")


@pytest.fixture(params=sorted(BUILDERS), scope="module")
def trained(request):
    keras.utils.set_random_seed(0)
    model = BUILDERS[request.param]()
    x = _data(model)
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(x, batch_size=32, epochs=1, verbose=0)
    return model, x


@pytest.mark.kernel_independent
def test_keras_save_and_load_round_trip(trained, tmp_path):
    model, x = trained
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, tfp_flows.FlowModel)
    np.testing.assert_allclose(loaded.log_prob(x), model.log_prob(x), rtol=1e-6, atol=1e-5)
    assert bool(loaded.data_initialized.numpy()) == bool(model.data_initialized.numpy())
    # The optimizer state comes back too, so training goes on where it stopped.
    assert loaded.optimizer.iterations.numpy() == model.optimizer.iterations.numpy()
    loaded.fit(x, batch_size=32, epochs=1, verbose=0)


def test_evaluate_reports_nats_and_bits_per_dim(trained):
    model, x = trained
    result = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)
    nll = -float(tf.reduce_mean(model.log_prob(x)))
    assert result["loss"] == pytest.approx(nll, rel=1e-5)
    size = int(np.prod(model.event_shape))
    assert result["bits_per_dim"] == pytest.approx(nll / (size * math.log(2)), rel=1e-5)


def test_model_call_and_predict_give_log_prob(trained):
    model, x = trained
    np.testing.assert_allclose(model(x[:8]), model.log_prob(x[:8]), rtol=1e-6)
    np.testing.assert_allclose(model.predict(x[:8], verbose=0), model.log_prob(x[:8]), rtol=1e-5,
                               atol=1e-5)


def test_sampling_is_seeded_and_tempered(trained):
    model, _ = trained
    a = model.sample(64, seed=7)
    b = model.sample(64, seed=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (64, *model.event_shape)
    cold = model.encode(model.sample(64, temperature=0.1, seed=7))
    warm = model.encode(model.sample(64, temperature=1.0, seed=7))
    assert float(tf.math.reduce_std(cold)) < 0.3 * float(tf.math.reduce_std(warm))


def test_actnorm_initialisation_standardises_the_first_batch():
    keras.utils.set_random_seed(1)
    model = BUILDERS["glow"]()
    x = _data(model)
    assert not bool(model.data_initialized.numpy())
    model.initialize_from_data(x, batch_size=64)
    assert bool(model.data_initialized.numpy())
    first_step = model.flow.steps[0].steps[0]
    actnorm = [first_step.loc, first_step.log_scale]
    assert float(tf.reduce_max(tf.abs(actnorm[0]))) > 0
    # Running it again is a no-op: the flag guards it.
    before = [v.numpy().copy() for v in actnorm]
    model.initialize_from_data(_data(model, seed=9), batch_size=64)
    for old, variable in zip(before, actnorm, strict=True):
        np.testing.assert_array_equal(old, variable.numpy())


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 5), "float32"), r"expects inputs of shape \(batch, 4\), got shape \(2, 5\)"),
    (np.zeros((4,), "float32"), r"expects inputs of shape \(batch, 4\), got shape \(4\)"),
    (np.zeros((2, 4), "int32"), "floating-point inputs.*int32.*Dequantize"),
    ({"image": np.zeros((2, 4), "float32")}, r"got a dict with keys \['image'\]"),
    (np.array([{"x": 1.0}, {"x": 2.0}]), "array of Python objects"),
])
def test_log_prob_rejects_bad_input(bad, message):
    model = BUILDERS["realnvp"]()
    with pytest.raises(ValueError, match=message):
        model.log_prob(bad)


def test_fit_rejects_wrong_shape_and_changes_nothing():
    model = BUILDERS["realnvp"]()
    model.compile("adam")
    before = [v.numpy().copy() for v in model.trainable_variables]
    with pytest.raises(ValueError, match=r"fit expects inputs of shape \(batch, 4\)"):
        model.fit(np.zeros((8, 3), "float32"), batch_size=4, epochs=1, verbose=0)
    for old, variable in zip(before, model.trainable_variables, strict=True):
        np.testing.assert_array_equal(old, variable.numpy())


@pytest.mark.parametrize("family", ["realnvp", "glow"])
def test_fit_and_evaluate_refuse_an_empty_array(family):
    model = BUILDERS[family]()
    model.compile("adam")
    empty = np.zeros((0, *model.event_shape), "float32")
    for method in (model.fit, model.evaluate):
        with pytest.raises(ValueError, match="got no examples"):
            method(empty, verbose=0)
    assert model.optimizer.iterations.numpy() == 0


@pytest.mark.parametrize("n, temperature, message", [
    (0, 1.0, "positive integer"), (2.5, 1.0, "positive integer"), (True, 1.0, "positive integer"),
    (3, 0.0, "finite temperature > 0"), (3, -1.0, "finite temperature > 0"),
    (3, float("inf"), "finite temperature > 0"), (3, float("nan"), "finite temperature > 0"),
])
def test_sample_rejects_bad_arguments(n, temperature, message):
    model = BUILDERS["realnvp"]()
    with pytest.raises(ValueError, match=message):
        model.sample(n, temperature=temperature)


def test_decode_rejects_wrong_latent_shape():
    model = BUILDERS["realnvp"]()
    with pytest.raises(ValueError, match=r"decode expects latents of shape \(batch, 4\)"):
        model.decode(np.zeros((2, 3), "float32"))


def test_nan_in_the_data_stops_fit_without_touching_weights():
    keras.utils.set_random_seed(2)
    model = BUILDERS["realnvp"]()
    model.compile(keras.optimizers.Adam(1e-2))
    x = _data(model)
    model.fit(x, batch_size=32, epochs=1, verbose=0)
    before = [v.numpy().copy() for v in model.trainable_variables]
    poisoned = x.copy()
    poisoned[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.fit(poisoned, batch_size=64, epochs=1, verbose=0, shuffle=False)
    for old, variable in zip(before, model.trainable_variables, strict=True):
        np.testing.assert_array_equal(old, variable.numpy())


def test_diverging_loss_stops_before_the_update():
    keras.utils.set_random_seed(3)
    model = BUILDERS["realnvp"]()
    model.compile(keras.optimizers.SGD(1.0))
    # Points far in the tail give an infinite loss in float32.
    x = np.full((32, 4), 1e20, "float32")
    before = [v.numpy().copy() for v in model.trainable_variables]
    with pytest.raises(ValueError, match="step refused, nothing was updated"):
        model.fit(x, batch_size=32, epochs=1, verbose=0)
    for old, variable in zip(before, model.trainable_variables, strict=True):
        np.testing.assert_array_equal(old, variable.numpy())


@pytest.mark.parametrize("scale", [1e15, 1e10])
def test_a_step_whose_update_would_not_be_finite_changes_nothing(scale):
    """At 1e15 the gradients overflow; at 1e10 they are finite but Adam's second moments
    (squared gradients) would become Inf and ruin the next clean step. Both are refused with
    weights, optimizer state and iteration count untouched, and a clean fit then trains."""
    keras.utils.set_random_seed(4)
    model = tfp_flows.realnvp((2,), hidden=16)
    model.compile(keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    before = [v.numpy().copy() for v in (*model.variables, *model.optimizer.variables)]
    with pytest.raises(ValueError, match="step refused, nothing was updated"):
        model.fit(np.full((4, 2), scale, "float32"), batch_size=4, verbose=0)
    after = [v.numpy() for v in (*model.variables, *model.optimizer.variables)]
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)
    assert int(model.optimizer.iterations.numpy()) == 0
    x = np.random.default_rng(0).standard_normal((64, 2)).astype("float32")
    model.fit(x, batch_size=32, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2
    assert all(np.all(np.isfinite(v.numpy())) for v in (*model.variables,
                                                         *model.optimizer.variables))


@pytest.mark.parametrize("bad", ["nan", "empty"])
def test_actnorm_initialisation_refuses_a_bad_first_batch(bad):
    model = BUILDERS["glow"]()
    model.compile("adam")
    x = _data(model)
    if bad == "nan":
        x[0, 0, 0, 0] = np.nan
    else:
        x = x[:0]
    before = [v.numpy().copy() for v in model.variables]
    with pytest.raises(ValueError, match="No weights were changed and the model is still"):
        model.initialize_from_data(x)
    assert not bool(model.data_initialized.numpy())
    for old, variable in zip(before, model.variables, strict=True):
        np.testing.assert_array_equal(old, variable.numpy())


def test_compile_refuses_a_loss():
    with pytest.raises(ValueError, match="no `loss` argument"):
        BUILDERS["realnvp"]().compile("adam", loss="mse")


def test_trainable_variables_are_keras_owned_and_complete():
    model = tfp_flows.glow((4, 4, 1), num_scales=2, depth=1, hidden=8, num_levels=17)
    names = [v.path for v in model.trainable_variables]
    assert len(names) == len(set(names))
    assert any("actnorm" in n for n in names) and any("conv1x1" in n for n in names)
    assert any("prior" in n for n in names) and any("coupling" in n for n in names)
    assert all(isinstance(v, keras.Variable) for v in model.trainable_variables)


@pytest.mark.parametrize("family", ["glow", "maf"])
@pytest.mark.kernel_independent
def test_public_methods_are_traced_once_whatever_the_arguments(family):
    """sample / log_prob / encode / decode run compiled, one trace each for 20 calls of
    varying batch size, n, temperature and seed, and give what the eager code gives."""
    keras.utils.set_random_seed(5)
    model = BUILDERS[family]()
    x = _data(model, n=7)
    for i in range(20):
        n = 1 + i % 4
        samples = model.sample(n, temperature=0.5 + 0.1 * (i % 3), seed=i if i % 5 else None)
        assert samples.shape == (n, *model.event_shape)
        z = model.encode(x[:n + 1])
        model.decode(z)
        model.log_prob(x[:1 + i % 7])
    functions = model.compiled_functions()
    assert sorted(functions) == ["decode", "encode", "log_prob", "sample"]
    for name, function in functions.items():
        assert function.experimental_get_tracing_count() == 1, name
    computations = model.computations()
    eager_z = computations["encode"](tf.constant(x))
    np.testing.assert_allclose(model.encode(x), eager_z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.log_prob(x), computations["log_prob"](tf.constant(x)),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(model.sample(3, seed=4), computations["sample"](3, 1.0, 4),
                               rtol=1e-5, atol=1e-5)
    # A scalar integer tensor is a number of samples too.
    np.testing.assert_array_equal(model.sample(tf.constant(3), seed=4), model.sample(3, seed=4))


def test_a_finite_float64_beyond_float32_gets_the_float32_answer():
    """1e300 overflowed in the cast to float32 (an inf x: NaN) where 3e38 gave -inf."""
    model = BUILDERS["realnvp"]()
    x64 = np.zeros((3, 4))
    x64[0, 1], x64[1, 2] = 1e300, -1e300
    log_prob = model.log_prob(x64).numpy()
    assert log_prob[0] == log_prob[1] == model.log_prob(
        np.array([[0, 3e38, 0, 0]], "float32"))[0] == -np.inf
    np.testing.assert_allclose(log_prob[2], model.log_prob(np.zeros((1, 4), "float32"))[0])
    # An infinite input is not clamped: it gets float32's answer for inf (NaN or -inf,
    # depending on the weights it meets), not that of the largest float32.
    x64[2, 0] = np.inf
    np.testing.assert_array_equal(model.log_prob(x64).numpy()[2],
                                  model.log_prob(x64[2:].astype("float32")).numpy()[0])


@pytest.mark.parametrize("how", ["dtype", "floatx"])
def test_a_float64_flow_is_refused(how):
    """dtype="float64" and set_floatx("float64") built a float32 model without a word."""
    floatx = keras.config.floatx()
    try:
        if how == "floatx":
            keras.config.set_floatx("float64")
        kwargs = {"dtype": "float64"} if how == "dtype" else {}
        with pytest.raises(ValueError, match="compute in float32.*float64"):
            tfp_flows.realnvp((4,), hidden=8, **kwargs)
    finally:
        keras.config.set_floatx(floatx)


@pytest.mark.kernel_independent
def test_fit_on_a_dataset_does_not_warn_about_shuffle():
    """Keras' default shuffle=True made every fit on a dataset warn that it was ignored."""
    model = BUILDERS["realnvp"]()
    model.compile("adam")
    data = tf.data.Dataset.from_tensor_slices(_data(model, n=8)).batch(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(data, epochs=1, verbose=0)
