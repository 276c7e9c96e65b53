"""precision=: conditioners in bfloat16 / float16, everything the user gets in float32.

The tolerances, and why:
- Exactness. Under bfloat16 the map x -> z itself changes (the conditioners' outputs carry
  bfloat16's ~3 significant digits), so the density is compared with the brute-force Jacobian
  of the *same* bfloat16 model's map. The log-det is computed in float32 from the very
  conditioner outputs the map uses, and every conditioner output enters a triangular block of
  the Jacobian, whose determinant is the float32 product of its diagonal: the two agree to
  float32 rounding, at the float32 test's own tolerance (rtol 1e-4, atol 1e-3, as in
  test_zoo.py). A log-det taken from a float32 evaluation of the networks while the map used
  the bfloat16 one would be off by the bfloat16 rounding of the log-scales, ~1e-2 nats here.
  The comparison runs eagerly on both sides: in a compiled function with oneDNN on, TF's graph
  optimizer fuses matmul, bias and activation into one op with one rounding, which is a
  (slightly) different bfloat16 map.
- The same weights in float32 and bfloat16 give log-densities that differ by the bfloat16
  rounding of the conditioners' outputs propagated through the flow: about 1e-2 nats per
  example on these tiny, randomised models (weights moved 0.1 off init); the bound below is
  0.1 nats, tight enough to catch a network left in float32 on one side and a wrong cast.
  The trained models of experiments/precision_log_prob.py give the numbers the docs quote.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from exactness import brute_force_log_prob, move_off_init

import tfp_flows
from tfp_flows import FlowModel
from tfp_flows.families import PRECISIONS
from tfp_flows.training import ConfigError, run
from tfp_flows.training.config import typed_config, validated

LOW = ("bfloat16", "float16")


def _vectors(n=3, d=4, seed=1):
    return np.random.default_rng(seed).standard_normal((n, d)).astype("float32")


def _pixels(shape=(4, 4, 1), levels=17, n=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, levels, size=(n, *shape)) + rng.random((n, *shape))).astype("float32")


# One tiny model of every family with conditioner networks, and its data: two layers of one
# hidden layer where the family's defaults would be five of two (a cast left out or a network
# left in float32 shows in any layer).
CASES = {
    "realnvp": (lambda p: tfp_flows.realnvp((4,), num_couplings=2, hidden=16, num_hidden=1,
                                            precision=p), _vectors),
    "nice": (lambda p: tfp_flows.nice((4,), hidden=16, num_hidden=1, precision=p), _vectors),
    "maf": (lambda p: tfp_flows.maf((4,), num_layers=2, hidden=16, num_hidden=1, precision=p),
            _vectors),
    "iaf": (lambda p: tfp_flows.iaf((4,), num_layers=2, hidden=16, num_hidden=1, precision=p),
            _vectors),
    "nsf": (lambda p: tfp_flows.nsf((4,), num_couplings=3, hidden=16, bins=4, precision=p),
            _vectors),
    "glow": (lambda p: tfp_flows.glow((4, 4, 1), num_scales=2, depth=2, hidden=8,
                                      num_levels=17, precision=p), _pixels),
}


def _pair(name, precision):
    """A float32 model with randomised weights and the same weights under `precision`."""
    build, data = CASES[name]
    keras.utils.set_random_seed(0)
    reference = build("float32")
    move_off_init(reference.trainable_variables, 0.1)
    low = build(precision)
    low.set_weights(reference.get_weights())
    return reference, low, data()


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_what_the_user_gets_is_float32_and_only_the_conditioners_change(precision):
    model = tfp_flows.glow((4, 4, 1), num_scales=2, depth=1, hidden=8, num_levels=17,
                           num_classes=3, precision=precision)
    x, labels = _pixels(), np.array([0, 1, 2])
    outputs = {"log_prob": model.log_prob(x, labels), "encode": model.encode(x, labels),
               "decode": model.decode(model.encode(x, labels), labels),
               "sample": model.sample(2, context=1, seed=0),
               "call": model(x, labels)}
    assert {name: out.dtype for name, out in outputs.items()} == dict.fromkeys(outputs,
                                                                                tf.float32)
    assert all(np.all(np.isfinite(out)) for out in outputs.values())
    # Conditioners compute in the precision, with float32 variables; the rest is float32.
    compute = "float32" if precision == "float32" else precision
    assert {net.compute_dtype for net in model.flow.conditioners} == {compute}
    assert {v.dtype for v in model.variables if v.dtype != "bool"} == {"float32"}
    assert model.flow.base.compute_dtype == "float32"
    # No global policy: a layer the user builds next is float32.
    assert keras.mixed_precision.global_policy().name == "float32"
    assert keras.layers.Dense(2).compute_dtype == "float32"


# NICE's additive couplings have no log-det to get wrong, and IAF's is MAF's read the other
# way (test_bfloat16_log_prob_is_close... runs both).
@pytest.mark.parametrize("name", ["realnvp", "maf", "nsf", "glow"])
def test_bfloat16_density_is_exact_for_the_map_it_computes(name):
    _, model, x = _pair(name, "bfloat16")
    z = model.encode(x)
    np.testing.assert_allclose(model.decode(tf.identity(z)), x, rtol=1e-3, atol=1e-2)
    # The brute force runs the bijector eagerly, so it is compared with the eager density: the
    # compiled one is another bfloat16 map: with oneDNN on, TF's graph optimizer (its remapper)
    # fuses a layer's matmul, bias and activation into one op that rounds once, 1-4e-3 nats
    # apart here (with remapping off the two agree to 1e-4).
    eager = model.distribution.log_prob(x)
    np.testing.assert_allclose(eager, brute_force_log_prob(model, x), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(model.log_prob(x), eager, atol=2e-2)


@pytest.mark.parametrize("name", list(CASES))
def test_bfloat16_log_prob_is_close_to_float32_with_the_same_weights(name):
    reference, model, x = _pair(name, "bfloat16")
    expected, got = reference.log_prob(x).numpy(), model.log_prob(x).numpy()
    difference = np.max(np.abs(got - expected))
    assert difference < 0.1, difference
    assert difference > 0, "the bfloat16 networks must have run in bfloat16"


def test_ffjord_dynamics_in_bfloat16_give_a_float32_density():
    model = tfp_flows.ffjord((2,), hidden=8, num_hidden=1, precision="bfloat16")
    assert model.flow.conditioners[0].compute_dtype == "bfloat16"
    log_prob = model.log_prob(_vectors(d=2))
    assert log_prob.dtype == tf.float32 and np.all(np.isfinite(log_prob))


def test_a_saved_model_keeps_its_precision(tmp_path):
    reference, model, x = _pair("realnvp", "bfloat16")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.flow.precision == "bfloat16"
    assert loaded.flow.conditioners[0].compute_dtype == "bfloat16"
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))


def test_an_exported_bfloat16_model_serves_float32(tmp_path):
    _, model, x = _pair("realnvp", "bfloat16")
    path = tfp_flows.export_saved_model(model, tmp_path / "1")
    signatures = tf.saved_model.load(path).signatures
    x = tf.constant(x)
    outputs = {"log_prob": signatures["log_prob"](x=x)["log_prob"],
               "z": signatures["encode"](x=x)["z"],
               "x": signatures["decode"](z=model.encode(x))["x"],
               "sample": signatures["sample"](n=tf.constant(2), temperature=tf.constant(1.0),
                                              seed=tf.constant(0, tf.int64))["x"]}
    assert {name: out.dtype for name, out in outputs.items()} == dict.fromkeys(outputs,
                                                                                tf.float32)
    np.testing.assert_allclose(outputs["log_prob"], model.log_prob(x), rtol=1e-5, atol=1e-5)


def test_a_config_from_before_precision_builds_a_float32_flow():
    flow = tfp_flows.realnvp((4,), hidden=8, precision="bfloat16").flow
    config = flow.get_config()
    assert config["precision"] == "bfloat16"
    del config["precision"]
    old = type(flow).from_config(config)
    assert old.precision == "float32"
    FlowModel(old)
    assert {net.compute_dtype for net in old.conditioners} == {"float32"}


@pytest.mark.parametrize("bad", ["float64", "mixed_bfloat16", "bf16", 16])
def test_a_bad_precision_is_refused(bad):
    with pytest.raises(ValueError, match="precision must be one of"):
        tfp_flows.realnvp((4,), precision=bad)


def test_float16_trains_with_loss_scaling_and_bfloat16_without():
    x = _vectors(n=32)
    for precision, scaled in (("float16", True), ("bfloat16", False), ("float32", False)):
        model = tfp_flows.realnvp((4,), num_couplings=2, hidden=8, num_hidden=1,
                                  precision=precision)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == scaled
        model.fit(x, batch_size=16, epochs=1, verbose=0)
        assert int(model.optimizer.iterations.numpy()) == 2
    # An optimizer given already wrapped is not wrapped twice.
    wrapped = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    model = tfp_flows.realnvp((4,), hidden=8, precision="float16")
    model.compile(optimizer=wrapped)
    assert model.optimizer is wrapped


TOY = {"flow": "realnvp", "dataset": "two_moons", "num_examples": 200, "hidden": 8,
       "num_couplings": 2, "epochs": 1, "batch_size": 100, "checkpoint_steps": 0,
       "verbose": 0, "temperatures": (1.0,)}


@pytest.mark.parametrize("bad", ["float64", "fp16", ""])
def test_the_training_command_refuses_a_bad_precision(bad):
    with pytest.raises(ConfigError, match=r"--precision must be one of float32, bfloat16, "
                                          rf"float16, got '{bad}'"):
        validated(typed_config({**TOY, "precision": bad}))


def test_the_training_command_refuses_a_bad_precision_on_its_command_line():
    from absl import flags

    from tfp_flows import train

    values = flags.FlagValues()
    train.define_flags(values)
    values(["train", "--precision=half"])
    with pytest.raises(ConfigError, match="--precision must be one of"):
        validated(typed_config(train.config_from_flags(values)))


def test_precision_is_part_of_a_runs_identity_and_old_runs_resume_as_float32(tmp_path):
    out = str(tmp_path)
    metrics = run({**TOY, "precision": "bfloat16", "output_dir": out})
    assert np.isfinite(metrics["test"]["bits_per_dim"])
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["precision"] == "bfloat16" and "precision" not in stored["training"]
    assert keras.models.load_model(str(tmp_path / "model.keras")).flow.precision == "bfloat16"
    with pytest.raises(ConfigError, match=r"holds a different model \(precision bfloat16 -> "
                                          r"float32\)"):
        run({**TOY, "output_dir": out, "epochs": 2})
    # A run directory from before --precision: its config.json has no precision.
    other = tmp_path / "old"
    run({**TOY, "output_dir": str(other)})
    path = other / "config.json"
    stored = json.loads(path.read_text())
    del stored["precision"]
    path.write_text(json.dumps(stored))
    resumed = run({**TOY, "output_dir": str(other), "epochs": 2})
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs"] == 2
    with pytest.raises(ConfigError, match="precision float32 -> float16"):
        run({**TOY, "output_dir": str(other), "epochs": 3, "precision": "float16"})


def test_the_precision_benchmark_cell_times_every_model_and_records_what_tfp_refuses():
    from benchmarks import precision
    from tfp_flows import machine

    cfg = precision.parse_args(["--glow-shape", "4,4,3", "--glow-levels", "1", "--glow-depth",
                                "1", "--glow-hidden", "4", "--glow-batch", "4", "--fit-steps",
                                "1", "--fit-rounds", "1", "--cell", "10"])
    rows = precision.run_cell(cfg)
    assert list(rows) == list(precision.MODELS)
    for name in ("ours float32", "ours bfloat16", "tfb.Glow float32"):
        assert rows[name]["train_images_s"] > 0
        assert np.isfinite(rows[name]["held_out_bits_per_dim"])
    # TFP's bijectors refuse the bfloat16 outputs of tf_keras's mixed policy.
    assert "bfloat16" in rows["tfb.Glow bfloat16"]["error"]
    info = {**machine.describe(), "cpu_bfloat16": []}
    text = precision.table({"oneDNN on, XLA off": rows}, info, cfg, "today")
    assert "no AMX, no AVX512-BF16" in text and "| oneDNN on, XLA off |" in text
