"""SavedModel export for TF Serving: signatures, loading without tfp_flows/TFP, saved_model_cli."""

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from exactness import move_off_init

import tfp_flows

BUILDERS = {
    "nice": lambda: tfp_flows.nice((4,), num_couplings=2, hidden=16, num_hidden=1),
    "realnvp": lambda: tfp_flows.realnvp((4, 4, 1), num_scales=2, hidden=8, num_hidden=1,
                                         num_levels=17),
    "glow": lambda: tfp_flows.glow((8, 8, 1), num_scales=2, depth=1, hidden=8, num_levels=17),
    "maf": lambda: tfp_flows.maf((4,), num_layers=2, hidden=16, num_hidden=1),
    "iaf": lambda: tfp_flows.iaf((4,), num_layers=2, hidden=16, num_hidden=1),
    "ffjord": lambda: tfp_flows.ffjord((2,), hidden=8, num_hidden=1),
}
SEED = 7
TEMPERATURE = 0.7
NUM_SAMPLES = 3

# Loads each SavedModel with neither Keras, TFP nor tfp_flows importable (as in TF Serving),
# calls every signature and writes the outputs next to the inputs.
LOADER = textwrap.dedent("""
    import sys
    for blocked in ("tensorflow_probability", "tfp_flows", "keras", "tf_keras"):
        sys.modules[blocked] = None
    import numpy as np
    import tensorflow as tf

    for export_dir in sys.argv[1:]:
        inputs = np.load(export_dir + "_inputs.npz")
        signatures = tf.saved_model.load(export_dir).signatures
        sample = signatures["sample"](n=tf.constant(inputs["n"]),
                                      temperature=tf.constant(inputs["temperature"]),
                                      seed=tf.constant(inputs["seed"]))
        outputs = {**signatures["log_prob"](x=tf.constant(inputs["x"])),
                   "default_log_prob": signatures["serving_default"](
                       x=tf.constant(inputs["x"]))["log_prob"],
                   "z": signatures["encode"](x=tf.constant(inputs["x"]))["z"],
                   "decoded": signatures["decode"](z=tf.constant(inputs["z"]))["x"],
                   "sample": sample["x"]}
        np.savez(export_dir + "_outputs.npz", **{k: np.asarray(v) for k, v in outputs.items()})
""")


def _data(model, n=5, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, *model.event_shape)
    if model.flow.num_levels is None:
        return rng.normal(size=shape).astype("float32")
    return (rng.integers(0, 17, size=shape) + rng.random(shape)).astype("float32")


def _latent(model, n=NUM_SAMPLES, seed=SEED, temperature=TEMPERATURE):
    """The latent the `sample` signature draws for `seed`, by its documented recipe."""
    z = tf.random.stateless_normal((n, *model.latent_shape), seed=[seed, 0])
    return z * temperature


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each family, with random weights (and ActNorm initialised), exported to <name>/1."""
    root = tmp_path_factory.mktemp("exports")
    models = {}
    for name, build in BUILDERS.items():
        keras.utils.set_random_seed(0)
        model = build()
        x = _data(model)
        model.initialize_from_data(x)
        move_off_init(model.trainable_variables, 0.05)
        path = root / name / "1"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert tfp_flows.export_saved_model(model, path) == str(path)
        assert not [w for w in caught if "initialised" in str(w.message)], name
        models[name] = (model, path, x)
    return models


def _signatures(path):
    return tf.saved_model.load(str(path)).signatures


@pytest.mark.parametrize("name", list(BUILDERS))
def test_signatures_compute_what_the_model_computes(exported, name):
    model, path, x = exported[name]
    signatures = _signatures(path)
    assert set(signatures) == {"serving_default", "log_prob", "sample", "encode", "decode"}

    out = signatures["log_prob"](x=tf.constant(x))
    log_prob = model.log_prob(x).numpy()
    np.testing.assert_allclose(out["log_prob"], log_prob, rtol=1e-5)
    np.testing.assert_allclose(out["bits_per_dim"], model.bits_per_dim(log_prob), rtol=1e-5)
    np.testing.assert_allclose(signatures["serving_default"](x=tf.constant(x))["log_prob"],
                               log_prob, rtol=1e-5)
    z = model.encode(x).numpy()
    np.testing.assert_allclose(signatures["encode"](x=tf.constant(x))["z"], z,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(signatures["decode"](z=tf.constant(z))["x"],
                               model.decode(tf.constant(z)), rtol=1e-5, atol=1e-5)

    def sample(seed):
        return signatures["sample"](n=tf.constant(NUM_SAMPLES),
                                    temperature=tf.constant(TEMPERATURE),
                                    seed=tf.constant(seed, tf.int64))["x"].numpy()

    samples = sample(SEED)
    assert samples.shape == (NUM_SAMPLES, *model.event_shape)
    np.testing.assert_array_equal(sample(SEED), samples)
    assert np.all(np.abs(sample(SEED + 1) - samples) > 0)
    np.testing.assert_allclose(samples, model.decode(_latent(model)), rtol=1e-5, atol=1e-5)


def test_loads_and_runs_without_keras_tfp_or_tfp_flows(exported):
    for model, path, x in exported.values():
        np.savez(f"{path}_inputs.npz", x=x, z=model.encode(x).numpy(), n=np.int32(NUM_SAMPLES),
                 temperature=np.float32(TEMPERATURE), seed=np.int64(SEED))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", LOADER, *(str(p) for _, p, _ in
                                                             exported.values())],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

    for name, (model, path, x) in exported.items():
        with np.load(f"{path}_outputs.npz") as out:
            log_prob = model.log_prob(x).numpy()
            np.testing.assert_allclose(out["log_prob"], log_prob, rtol=1e-5, err_msg=name)
            np.testing.assert_allclose(out["default_log_prob"], log_prob, rtol=1e-5, err_msg=name)
            np.testing.assert_allclose(out["bits_per_dim"], model.bits_per_dim(log_prob),
                                       rtol=1e-5, err_msg=name)
            z = model.encode(x).numpy()
            np.testing.assert_allclose(out["z"], z, rtol=1e-5, atol=1e-5, err_msg=name)
            np.testing.assert_allclose(out["decoded"], model.decode(tf.constant(z)),
                                       rtol=1e-5, atol=1e-5, err_msg=name)
            np.testing.assert_allclose(out["sample"], model.decode(_latent(model)),
                                       rtol=1e-5, atol=1e-5, err_msg=name)


def _saved_model_cli(*args: str) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).with_name("saved_model_cli")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([str(cli), "run", "--tag_set", "serve", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_saved_model_cli_runs_log_prob(exported, tmp_path):
    """saved_model_cli loads with the session-based loader that TF Serving uses."""
    model, path, x = exported["glow"]
    np.save(tmp_path / "x.npy", x)
    result = _saved_model_cli("--dir", str(path), "--signature_def", "log_prob",
                              "--inputs", f"x={tmp_path / 'x.npy'}",
                              "--outdir", str(tmp_path / "log_prob"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Result for output key log_prob" in result.stdout
    log_prob = model.log_prob(x).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "log_prob" / "log_prob.npy"), log_prob,
                               rtol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "log_prob" / "bits_per_dim.npy"),
                               model.bits_per_dim(log_prob), rtol=1e-5)


@pytest.mark.parametrize("name, field, shape", [
    ("glow", "x", (2, 4, 4, 1)),
    ("glow", "x", (2, 64)),
    ("glow", "x", (2, 8, 8, 1, 1)),
    ("glow", "z", (2, 8, 8, 2)),
    ("maf", "x", (2, 3)),
    ("maf", "z", (4,)),
])
def test_a_wrong_shape_fails_with_a_clear_message(exported, name, field, shape):
    _, path, _ = exported[name]
    signatures = _signatures(path)
    signature = "decode" if field == "z" else "log_prob"
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError),
                       match=r"(?s)Shape of tensor \w+ \[.*\] is not compatible with expected "
                             r"shape \[\?,"):
        signatures[signature](**{field: tf.zeros(shape)})


def test_a_wrong_dtype_or_argument_fails_with_a_clear_message(exported):
    _, path, x = exported["glow"]
    signatures = _signatures(path)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="expected to be a float tensor but is a double tensor"):
        signatures["log_prob"](x=tf.constant(x, tf.float64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a int32 tensor"):
        signatures["sample"](n=tf.constant(2.0), temperature=tf.constant(1.0),
                             seed=tf.constant(0, tf.int64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="sample expects n >= 1"):
        signatures["sample"](n=tf.constant(0), temperature=tf.constant(1.0),
                             seed=tf.constant(0, tf.int64))
    for temperature in (0.0, float("inf")):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="sample expects a finite temperature > 0"):
            signatures["sample"](n=tf.constant(2), temperature=tf.constant(temperature),
                                 seed=tf.constant(0, tf.int64))
    with pytest.raises(TypeError, match="expects a tfp_flows FlowModel"):
        tfp_flows.export_saved_model(keras.Sequential([keras.layers.Dense(1)]), path)


def _op_types(signature) -> set[str]:
    graph = signature.graph.as_graph_def()
    nodes = list(graph.node)
    for function in graph.library.function:
        nodes.extend(function.node_def)
    return {node.op for node in nodes}


def test_export_does_not_run_the_data_dependent_initialisation(tmp_path):
    keras.utils.set_random_seed(0)
    model = BUILDERS["glow"]()
    before = model.get_weights()
    with pytest.warns(UserWarning, match="never initialised from data"):
        tfp_flows.export_saved_model(model, tmp_path / "1")

    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)
    assert not bool(model.data_initialized.numpy())
    signatures = _signatures(tmp_path / "1")
    for name, signature in signatures.items():
        ops = _op_types(signature)
        assert "ReadVariableOp" in ops, name
        assert not {op for op in ops if op.startswith("Assign")}, name
    x = _data(model)
    np.testing.assert_allclose(signatures["log_prob"](x=tf.constant(x))["log_prob"],
                               model.log_prob(x), rtol=1e-5)
