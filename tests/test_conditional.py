"""Conditional flows: the context reaches every conditioner, and every API takes it."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from exactness import move_off_init

import tfp_flows
from tfp_flows.nets import MADE
from tfp_flows.nets.stack import ZeroInitStack

K = 3

VECTOR_BUILDERS = {
    "nice": lambda **c: tfp_flows.nice((4,), hidden=8, num_hidden=1, **c),
    "realnvp": lambda **c: tfp_flows.realnvp((4,), num_couplings=2, hidden=8, **c),
    "nsf": lambda **c: tfp_flows.nsf((4,), num_couplings=2, hidden=8, bins=3, **c),
    "glow": lambda **c: tfp_flows.glow((4,), depth=2, hidden=8, **c),
    "maf": lambda **c: tfp_flows.maf((4,), num_layers=2, hidden=8, **c),
    "maf_spline": lambda **c: tfp_flows.maf((4,), num_layers=2, hidden=8, transform="spline",
                                            bins=3, **c),
    "iaf": lambda **c: tfp_flows.iaf((4,), num_layers=2, hidden=8, **c),
}
IMAGE_BUILDERS = {
    "glow": lambda **c: tfp_flows.glow((4, 4, 1), num_scales=2, depth=1, hidden=8,
                                       num_levels=17, **c),
    "realnvp": lambda **c: tfp_flows.realnvp((4, 4, 1), num_scales=2, hidden=8, num_hidden=1,
                                             num_levels=17, **c),
}


def _vectors(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype("float32"), rng.standard_normal(
        (n, K)).astype("float32")


def _pixels(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 17, (n, 4, 4, 1)) + rng.random((n, 4, 4, 1))).astype("float32")


def _assert_context_reaches_every_conditioner(model, x, context):
    conditioners = model.flow.conditioners
    assert conditioners and all(net.context_size == K for net in conditioners)
    variables = [net.kernels[0] if isinstance(net, ZeroInitStack) else net.context_kernel
                 for net in conditioners]
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.log_prob(x, context=context))
    gradients = tape.gradient(loss, variables)
    for net, gradient in zip(conditioners, gradients, strict=True):
        gradient = tf.convert_to_tensor(gradient)  # rows of stacked copies come back sparse
        if not isinstance(net, MADE):
            gradient = gradient[..., -K:, :]
        # Each copy of a stacked network (Glow's steps of a level) is a conditioner of its own.
        copies = gradient if getattr(net, "copies", None) else gradient[None]
        for copy in copies:
            assert float(tf.reduce_max(tf.abs(copy))) > 0, net.path


@pytest.mark.parametrize("family", sorted(VECTOR_BUILDERS))
def test_vector_context_reaches_every_conditioner(family):
    keras.utils.set_random_seed(1)
    model = VECTOR_BUILDERS[family](context_shape=(K,))
    move_off_init(model.trainable_variables, 0.1)
    x, context = _vectors()
    _assert_context_reaches_every_conditioner(model, x, context)
    # The density really depends on the context, and is exact given it.
    assert not np.allclose(model.log_prob(x, context), model.log_prob(x, context + 1.0))
    z = model.encode(x, context=context)
    np.testing.assert_allclose(model.decode(tf.identity(z), context=context), x, atol=1e-4)
    np.testing.assert_allclose(model.conditional_distribution(context).log_prob(x),
                               model.log_prob(x, context=context), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", sorted(IMAGE_BUILDERS))
def test_class_labels_reach_every_conditioner_and_the_prior(family):
    keras.utils.set_random_seed(2)
    model = IMAGE_BUILDERS[family](num_classes=K)
    move_off_init(model.trainable_variables, 0.05)
    x, labels = _pixels(), np.array([0, 1, 2, 1])
    _assert_context_reaches_every_conditioner(model, x, labels)
    if family == "glow":
        prior = model.flow.base  # the class-conditional prior
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model.log_prob(x, context=labels))
        assert float(tf.reduce_max(tf.abs(tape.gradient(loss, prior.dense.kernel)))) > 0
    # Brute force: log p(x | c) from the autodiff Jacobian of encode, given the labels, and
    # the base's density of the latent (Glow's: the class-conditional prior; else N(0, I)).
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = model.encode(x, context=labels)
    jacobian = tf.reshape(tape.batch_jacobian(z, x), (4, 16, 16))
    # An unconditional base's moments have no batch axis: broadcast them to the latents.
    mean = tf.broadcast_to(model.base_distribution(labels).mean(), z.shape)
    stddev = tf.broadcast_to(model.base_distribution(labels).stddev(), z.shape)
    z, mean, stddev = (tf.reshape(t, (4, 16)) for t in (z, mean, stddev))
    expected = (-0.5 * tf.reduce_sum(((z - mean) / stddev)**2, 1) - 8 * np.log(2 * np.pi)
                - tf.reduce_sum(tf.math.log(stddev), 1) + tf.linalg.slogdet(jacobian)[1])
    np.testing.assert_allclose(model.log_prob(x, context=labels), expected, rtol=1e-4, atol=1e-3)


def test_one_context_applies_to_the_whole_batch():
    keras.utils.set_random_seed(3)
    model = VECTOR_BUILDERS["realnvp"](context_shape=(K,))
    move_off_init(model.trainable_variables, 0.1)
    x, context = _vectors()
    one = context[0]
    np.testing.assert_allclose(model.log_prob(x, context=one),
                               model.log_prob(x, context=np.repeat(one[None], 5, 0)), rtol=1e-6)
    samples = model.conditional_distribution(one).sample(6, seed=(1, 2))
    assert samples.shape == (6, 4)
    assert model.sample(6, context=one, seed=4).shape == (6, 4)
    per_sample = model.sample(5, context=context, seed=4)
    assert per_sample.shape == (5, 4)
    # Sample i uses context i: the same noise under another context gives another sample.
    np.testing.assert_allclose(per_sample[0], model.sample(5, context=context[0], seed=4)[0],
                               rtol=1e-5, atol=1e-6)


def test_class_conditional_samples_follow_their_label():
    """After training on two well-separated classes, samples of each label land in its class."""
    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    x = (rng.standard_normal((2000, 2)) * 0.3 + np.where(labels[:, None] == 1, 3.0, -3.0)
         ).astype("float32")
    model = tfp_flows.realnvp((2,), num_couplings=4, hidden=32, num_classes=2)
    model.compile(keras.optimizers.Adam(3e-3))
    model.fit(x, labels, batch_size=100, epochs=4, verbose=0)
    for label, sign in ((0, -1.0), (1, 1.0)):
        samples = model.sample(200, context=label, seed=label).numpy()
        assert np.mean(np.sign(samples) == sign) > 0.95, label
    # fit on a dataset of (x, label) pairs trains too, and evaluate takes the labels.
    pairs = tf.data.Dataset.from_tensor_slices((x, labels)).batch(100)
    before = model.evaluate(pairs, verbose=0, return_dict=True)["loss"]
    model.fit(pairs, epochs=1, verbose=0)
    assert model.evaluate(x, labels, verbose=0, return_dict=True)["loss"] < before + 0.05


@pytest.mark.parametrize("call, message", [
    (lambda m, x, c: m.log_prob(x), "conditional and needs a context"),
    (lambda m, x, c: m.sample(3), "conditional and needs a context"),
    (lambda m, x, c: m.encode(x), "conditional and needs a context"),
    (lambda m, x, c: m.distribution, "use conditional_distribution"),
    (lambda m, x, c: m.log_prob(x, context=c[:, :2]), r"context of shape \(batch, 3\)"),
    (lambda m, x, c: m.log_prob(x, context=c[:2]), r"with batch 5 \(or 1\)"),
    (lambda m, x, c: m.log_prob(x, context=c.astype(bool)), "got dtype bool"),
    (lambda m, x, c: m.sample(4, context=c), r"with batch 4 \(or 1\)"),
    (lambda m, x, c: m.fit(x, epochs=1, verbose=0), "conditional and needs a context"),
])
def test_conditional_model_refuses_a_missing_or_wrong_context(call, message):
    model = VECTOR_BUILDERS["realnvp"](context_shape=(K,))
    model.compile("adam")
    x, context = _vectors()
    with pytest.raises(ValueError, match=message):
        call(model, x, context)


@pytest.mark.parametrize("call, message", [
    (lambda m, x: m.log_prob(x, context=np.zeros((5, 3), "float32")), "unconditional"),
    (lambda m, x: m.sample(2, context=[1.0]), "unconditional"),
    (lambda m, x: m.conditional_distribution([1.0]), "use model.distribution"),
    (lambda m, x: m.fit(x, np.zeros(5), epochs=1, verbose=0), "unconditional"),
])
def test_unconditional_model_refuses_a_context(call, message):
    model = VECTOR_BUILDERS["realnvp"]()
    model.compile("adam")
    with pytest.raises(ValueError, match=message):
        call(model, _vectors()[0])


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1, 3, 0]), r"class labels in \[0, 3\), got values in \[0, 3\]"),
    (np.array([0, -1, 2, 0]), r"class labels in \[0, 3\)"),
    (np.array([0.0, 1.0, 2.0, 0.0]), "integer class labels.*got dtype float64"),
])
def test_class_labels_are_checked(labels, message):
    model = IMAGE_BUILDERS["glow"](num_classes=K)
    with pytest.raises(ValueError, match=message):
        model.log_prob(_pixels(), context=labels)


@pytest.mark.kernel_independent
def test_conditional_model_round_trips_through_keras_save(tmp_path):
    keras.utils.set_random_seed(5)
    model = IMAGE_BUILDERS["glow"](num_classes=K)
    x, labels = _pixels(8), np.array([0, 1, 2, 0, 1, 2, 0, 1])
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(x, labels, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / "conditional.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.flow.num_classes == K and bool(loaded.data_initialized.numpy())
    np.testing.assert_allclose(loaded.log_prob(x, context=labels),
                               model.log_prob(x, context=labels), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loaded.sample(3, context=1, seed=2),
                               model.sample(3, context=1, seed=2), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["labels", "vectors"])
@pytest.mark.kernel_independent
def test_conditional_export_takes_the_context_in_every_signature(kind, tmp_path):
    keras.utils.set_random_seed(6)
    if kind == "labels":
        model = IMAGE_BUILDERS["glow"](num_classes=K)
        x, context = _pixels(4), np.array([2, 0, 1, 2], "int32")
        model.initialize_from_data(x, context=context)
    else:
        model = VECTOR_BUILDERS["maf"](context_shape=(K,))
        x, context = _vectors(4)
    move_off_init(model.trainable_variables, 0.05)
    path = tfp_flows.export_saved_model(model, tmp_path / "1")
    served = tf.saved_model.load(path).signatures
    for name in ("log_prob", "sample", "encode", "decode"):
        assert "context" in served[name].structured_input_signature[1], name
    got = served["log_prob"](x=tf.constant(x), context=tf.constant(context))["log_prob"]
    np.testing.assert_allclose(got, model.log_prob(x, context=context), rtol=1e-5, atol=1e-4)
    z = served["encode"](x=tf.constant(x), context=tf.constant(context))["z"]
    np.testing.assert_allclose(z, model.encode(x, context=context), rtol=1e-5, atol=1e-4)
    back = served["decode"](z=z, context=tf.constant(context))["x"]
    np.testing.assert_allclose(back, x, rtol=1e-4, atol=1e-3)
    sampled = served["sample"](n=tf.constant(3), temperature=tf.constant(0.7),
                               seed=tf.constant(9, tf.int64),
                               context=tf.constant(context[:1]))["x"]
    np.testing.assert_allclose(sampled, model.sample(3, context=context[0], temperature=0.7,
                                                     seed=9), rtol=1e-5, atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="batch size 1 or the batch size"):
        served["log_prob"](x=tf.constant(x), context=tf.constant(context[:2]))


CONTEXT_BUILDERS = {**{f"vector_{name}": build for name, build in VECTOR_BUILDERS.items()},
                    **{f"image_{name}": build for name, build in IMAGE_BUILDERS.items()}}


@pytest.mark.parametrize("family", sorted(CONTEXT_BUILDERS))
def test_a_nan_or_inf_context_gives_nan_like_a_nan_x(family):
    """The conditioners' ReLUs turned a NaN context into numbers: finite densities, latents
    and samples for a context that has none."""
    model = CONTEXT_BUILDERS[family](context_shape=(K,))
    # The conditioners start at zero, where a context changes nothing.
    move_off_init(model.trainable_variables, 0.1)
    x = _pixels(4) if family.startswith("image") else _vectors(4)[0]
    context = _vectors(4)[1]
    context[0, 0], context[1, 2], context[2, 1] = np.nan, np.inf, -np.inf
    bad, good = slice(0, 3), 3
    log_prob = model.log_prob(x, context).numpy()
    assert np.isnan(log_prob[bad]).all() and np.isfinite(log_prob[good]), log_prob
    np.testing.assert_allclose(log_prob[good], model.log_prob(x[good:], context[good:])[0],
                               rtol=1e-5)
    distribution = model.conditional_distribution(context)
    np.testing.assert_array_equal(np.isnan(distribution.log_prob(x).numpy()),
                                  np.isnan(log_prob))
    rows = tuple(range(1, x.ndim))
    z = model.encode(x, context).numpy().reshape(4, -1)
    assert np.isnan(z[bad]).all() and np.isfinite(z[good]).all()
    sampled = model.sample(4, context=context, seed=1).numpy()
    assert np.isnan(sampled[bad]).all(axis=rows).all() and np.isfinite(sampled[good]).all()
    assert np.isnan(model.sample(2, context=context[0], seed=1).numpy()).all()
    predicted = model.predict((x, context), batch_size=2, verbose=0)
    np.testing.assert_array_equal(np.isnan(predicted), np.isnan(log_prob))
    model.compile("adam")
    assert np.isnan(model.evaluate(x, context, verbose=0, return_dict=True)["loss"])


def test_a_context_too_large_for_float32_gives_minus_inf_not_nan():
    model = VECTOR_BUILDERS["realnvp"](context_shape=(K,))
    move_off_init(model.trainable_variables, 1.0)
    x, context = _vectors(2)
    context[0] = 1e30
    log_prob = model.log_prob(x, context).numpy()
    assert log_prob[0] == -np.inf and np.isfinite(log_prob[1])


@pytest.mark.parametrize("label", [3, -1])
@pytest.mark.parametrize("call", ["evaluate", "predict"])
def test_labels_out_of_range_in_a_dataset_are_refused(call, label):
    """Arrays were refused; a dataset's labels reached tf.one_hot, which gives zeros."""
    model = VECTOR_BUILDERS["realnvp"](num_classes=K)
    model.compile("adam")
    labels = np.array([0, 1, label, 2, 0, 1, 2, 0])
    pairs = tf.data.Dataset.from_tensor_slices((_vectors(8)[0], labels)).batch(4)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError),
                       match=rf"{call} expects class labels in \[0, 3\)"):
        getattr(model, call)(pairs, verbose=0)


def test_labels_out_of_range_give_nan_where_xla_drops_the_check():
    model = VECTOR_BUILDERS["realnvp"](num_classes=K)
    x = _vectors(3)[0]
    log_prob = tf.function(model.computations()["log_prob"], jit_compile=True)(
        tf.constant(x), tf.constant([0, 3, -1], tf.int64)).numpy()
    assert np.isfinite(log_prob[0]) and np.isnan(log_prob[1:]).all()


def test_conditional_prior_gradients_reach_a_distribution_built_before_the_tape():
    """Glow's conditional prior computed its mean and scale when the bijector was built; as
    the base it must read its weights when the distribution is used, not when it is built."""
    model = IMAGE_BUILDERS["glow"](num_classes=K)
    distribution = model.conditional_distribution(np.array([0, 2, 1, 1]))
    prior = model.flow.base
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(distribution.log_prob(_pixels()))
    gradients = tape.gradient(loss, prior.trainable_variables)
    assert len(gradients) == 2
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients)


@pytest.mark.parametrize("call, message", [
    # The conditioner's broadcast failed: "Incompatible shapes [3,3] vs [8,3]".
    (lambda m, x: m.conditional_distribution(np.array([0, 1, 2])).log_prob(x),
     r"conditional_distribution: a batch of contexts pairs .* got 3 contexts"),
    # "Cannot convert a symbolic tf.Tensor".
    (lambda m, x: m.fit(tf.data.Dataset.from_tensor_slices(
        (x, (np.zeros(8, "int64"),))).batch(4), epochs=1, verbose=0),
     r"fit expects .* got a tuple of 1 tensors"),
    # "Cannot iterate over a shape with unknown rank".
    (lambda m, x: m.fit(tf.data.Dataset.from_tensor_slices(
        (x, np.zeros((8, 1), "int64"))).batch(4), epochs=1, verbose=0),
     r"fit expects a context of shape \(batch,\) or a scalar"),
    # Named conditional_bijector.
    (lambda m, x: m.conditional_distribution(np.array([0.5])),
     "conditional_distribution expects integer class labels"),
    # An InvalidArgumentError with TF's graph traceback.
    (lambda m, x: m.fit(tf.data.Dataset.from_tensor_slices(
        (x, np.full(8, 3))).batch(4), epochs=1, verbose=0), r"class labels"),
])
def test_context_errors_are_clear_value_errors(call, message):
    model = VECTOR_BUILDERS["realnvp"](num_classes=K)
    model.compile("adam")
    before = [v.numpy() for v in model.variables]
    x = np.concatenate([_vectors(4)[0], _vectors(4, seed=1)[0]])
    with pytest.raises(ValueError, match=message):
        call(model, x)
    for variable, value in zip(model.variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_one_label_for_a_whole_batch_in_fit_and_evaluate():
    """fit(x, 1) failed in Keras with "Unrecognized data type", though documented."""
    model = VECTOR_BUILDERS["realnvp"](num_classes=K)
    model.compile("adam")
    x = _vectors(8)[0]
    model.fit(x, 1, batch_size=4, epochs=1, verbose=0)
    np.testing.assert_allclose(model.evaluate(x, 2, verbose=0, return_dict=True)["loss"],
                               -np.mean(model.log_prob(x, context=2)), rtol=1e-5)
    np.testing.assert_allclose(model.predict((x, 2), verbose=0), model.log_prob(x, context=2),
                               rtol=1e-5)


def test_exported_signatures_give_nan_for_a_nan_context(tmp_path):
    model = VECTOR_BUILDERS["realnvp"](context_shape=(K,))
    move_off_init(model.trainable_variables, 0.1)
    x, context = _vectors(3)
    context[0, 1] = np.nan
    served = tf.saved_model.load(tfp_flows.export_saved_model(model, tmp_path / "1")).signatures
    context = tf.constant(context)
    log_prob = served["log_prob"](x=tf.constant(x), context=context)["log_prob"].numpy()
    assert np.isnan(log_prob[0]) and np.isfinite(log_prob[1:]).all()
    z = served["encode"](x=tf.constant(x), context=context)["z"].numpy()
    assert np.isnan(z[0]).all() and np.isfinite(z[1:]).all()
    back = served["decode"](z=tf.zeros((3, 4)), context=context)["x"].numpy()
    assert np.isnan(back[0]).all() and np.isfinite(back[1:]).all()
    sampled = served["sample"](n=tf.constant(3), temperature=tf.constant(1.0),
                               seed=tf.constant(1, tf.int64), context=context)["x"].numpy()
    assert np.isnan(sampled[0]).all() and np.isfinite(sampled[1:]).all()
