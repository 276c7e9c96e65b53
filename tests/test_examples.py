"""The examples of extending tfp-flows (examples/*.py), each a user's module on the public API
alone: what it registers works as a built-in does (exact density with the weights off their
initial values, `.keras` reload, a SavedModel that loads without TFP, the training command
with --plugin), and its `main()` runs end to end. tests/conftest.py puts examples/ on the path.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import csv_source
import keras
import leaky_relu_transform
import linear_mixing_family
import numpy as np
import pytest
import scipy.stats
import student_t_base
import tensorflow as tf
from exactness import brute_force_log_prob, move_off_init
from test_export import LOADER

import tfp_flows
from tfp_flows import datasets, transforms
from tfp_flows.training import run


def _points(n=6, size=3, seed=1):
    return np.random.default_rng(seed).normal(size=(n, size)).astype("float32")


def test_the_transform_inverts_with_the_autodiff_log_det():
    transform = transforms.get("leaky_relu", max_log_slope=2.0)
    rng = np.random.default_rng(5)
    x = tf.constant(2.0 * rng.normal(size=(7, 3)), tf.float64)
    params = tf.constant(2.0 * rng.normal(size=(7, 9)), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z, log_det = transform(x, params, inverse=True)
    back, back_log_det = transform(z, params, inverse=False)
    np.testing.assert_allclose(back, x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_det, np.log(np.abs(tape.gradient(z, x))), rtol=1e-12)
    np.testing.assert_allclose(back_log_det, -log_det, rtol=1e-12)
    assert np.all(np.abs(log_det) <= 2.0) and np.ptp(log_det.numpy()) > 1.0
    zero = tf.zeros((7, 9), tf.float64)
    np.testing.assert_array_equal(transform(x, zero, inverse=True)[0], x)
    with pytest.raises(ValueError, match="max_log_slope must be a positive number, got 0"):
        transforms.get("leaky_relu", max_log_slope=0)


@pytest.mark.parametrize("build", [
    lambda: tfp_flows.realnvp((3,), num_couplings=3, hidden=8, num_hidden=1,
                              transform="leaky_relu"),
    lambda: tfp_flows.maf((3,), num_layers=2, hidden=8, num_hidden=1, transform="leaky_relu"),
    lambda: tfp_flows.build("linear_mixing", (3,), num_couplings=2, hidden=8, num_hidden=1,
                            init_mixing=0.5),
    lambda: tfp_flows.build("linear_mixing", (3,), num_couplings=2, hidden=8, num_hidden=1,
                            transform="leaky_relu"),
], ids=["realnvp-leaky_relu", "maf-leaky_relu", "linear_mixing", "linear_mixing-leaky_relu"])
def test_the_density_is_exact_with_the_weights_off_their_initial_values(build):
    keras.utils.set_random_seed(3)
    model = build()
    move_off_init(model.trainable_variables, 0.2)
    x = _points()
    log_prob = model.log_prob(x)
    np.testing.assert_allclose(log_prob, brute_force_log_prob(model, x), rtol=1e-4, atol=1e-4)
    keras.utils.set_random_seed(3)
    assert np.max(np.abs(build().log_prob(x) - log_prob)) > 1e-2


def test_the_family_declares_its_float_argument():
    flow = tfp_flows.build("linear_mixing", (4,), hidden=8, init_mixing=0).flow
    assert flow.init_mixing == 0.0 and isinstance(flow.init_mixing, float)
    assert flow.get_config()["init_mixing"] == 0.0
    mixing = flow.steps[1].bijectors()[0]
    np.testing.assert_allclose(mixing.weight(), np.eye(4), atol=1e-6)  # 0: the identity
    with pytest.raises(ValueError, match=r"init_mixing must be a number >= 0.0, got -1.0"):
        tfp_flows.build("linear_mixing", (4,), init_mixing=-1.0)
    with pytest.raises(ValueError, match=r"linear_mixing takes vectors \(D,\) with D >= 2"):
        tfp_flows.build("linear_mixing", (4, 4, 1))


def test_the_base_density_is_exact_with_its_weights_off_their_initial_values():
    model = tfp_flows.realnvp((3,), num_couplings=2, hidden=8, num_hidden=1,
                              base={"name": "student_t", "initial_df": 3.0})
    move_off_init(model.trainable_variables, 0.2)
    base = model.flow.base
    assert {id(v) for v in base.trainable_variables} <= {id(v) for v in model.trainable_variables}
    x = tf.convert_to_tensor(_points())
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = model.encode(x)
    log_det = tf.linalg.slogdet(tape.batch_jacobian(z, x))[1].numpy()
    df = 2.0 + float(tf.nn.softplus(base.raw_df))
    scale = np.exp(base.log_scale.numpy())
    expected = scipy.stats.t.logpdf(z.numpy(), df, scale=scale).sum(axis=1) + log_det
    np.testing.assert_allclose(model.log_prob(x), expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="initial_df must be a number > 2, got 2"):
        tfp_flows.realnvp((3,), base={"name": "student_t", "initial_df": 2})


@pytest.fixture(scope="module")
def mains(tmp_path_factory):
    """The main() of each example that saves and exports a model, run once, then the weights
    moved off their trained values and written again."""
    ran = {}
    for example in (leaky_relu_transform, linear_mixing_family, student_t_base):
        directory = tmp_path_factory.mktemp(example.__name__)
        result = example.main(str(directory), epochs=1)
        assert np.all(np.isfinite(result["model"].log_prob(result["x"])))
        ran[example.__name__] = result
    return ran


@pytest.mark.parametrize("name", ["leaky_relu_transform", "linear_mixing_family",
                                  "student_t_base"])
def test_main_saves_a_model_that_reloads_with_the_same_density(mains, name):
    model, x = mains[name]["model"], mains[name]["x"]
    reloaded = keras.models.load_model(mains[name]["keras"])
    assert reloaded.flow.get_config() == model.flow.get_config()
    np.testing.assert_array_equal(reloaded.log_prob(x), model.log_prob(x))


def test_main_exports_a_saved_model_that_runs_without_tfp_or_tfp_flows(mains):
    for result in mains.values():
        model, x = result["model"], result["x"]
        np.savez(f"{result['saved_model']}_inputs.npz", x=x, z=model.encode(x).numpy(),
                 n=np.int32(3), temperature=np.float32(0.7), seed=np.int64(7))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run([sys.executable, "-c", LOADER,
                                *(result["saved_model"] for result in mains.values())],
                               env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    for name, result in mains.items():
        with np.load(f"{result['saved_model']}_outputs.npz") as out:
            np.testing.assert_allclose(out["log_prob"], result["model"].log_prob(result["x"]),
                                       rtol=1e-5, err_msg=name)


def test_the_source_reads_a_csv_by_prefix_or_path_and_main_trains_on_it(tmp_path):
    result = csv_source.main(str(tmp_path), epochs=1)
    splits, points = result["splits"], result["points"].astype(np.float32)
    assert splits.event_shape == (3,) and splits.num_levels is None
    test = np.concatenate(list(splits.test.as_numpy_iterator()))
    assert {row.tobytes() for row in test} <= {row.tobytes() for row in points}
    path = result["spec"].removeprefix("csv:")
    np.testing.assert_array_equal(datasets.load_arrays(path)["x_test"],
                                  datasets.load_arrays(result["spec"])["x_test"])
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    with pytest.raises(ValueError, match="ragged.csv must hold float vectors, one per row"):
        datasets.load_arrays(str(tmp_path / "ragged.csv"))


def _guide_commands() -> list[list[str]]:
    """The flags of each training command of the plugins guide (docs/guides/plugins.md)."""
    section = (Path(__file__).resolve().parent.parent / "docs" / "guides" / "plugins.md"
               ).read_text()
    prefix = "PYTHONPATH=examples python -m tfp_flows.train "
    return [line.removeprefix(prefix).split() for line in section.splitlines()
            if line.startswith(prefix)]


def test_the_plugins_guide_has_a_command_per_plugin():
    assert [[f for f in flags if f.startswith("--plugin")] for flags in _guide_commands()] == [
        ["--plugin=linear_mixing_family"], ["--plugin=csv_source",
                                            "--plugin=leaky_relu_transform"]]


@pytest.mark.parametrize("index", [0, 1], ids=["family", "source-and-transform"])
def test_the_plugins_guide_training_commands_train_with_their_plugins(tmp_path, index):
    from absl import flags

    from tfp_flows.train import config_from_flags, define_flags

    np.savetxt(tmp_path / "points.csv", _points(n=300, seed=2), delimiter=",")
    argv = [flag.replace("/tmp/", f"{tmp_path}/") for flag in _guide_commands()[index]]
    values = flags.FlagValues()
    define_flags(values)
    # Tiny: fewer examples, one epoch, a fresh output directory.
    values(["train", *argv, "--num_examples=300", "--epochs=1", "--checkpoint_steps=0",
            "--hidden=8", f"--output_dir={tmp_path / 'run'}"])
    metrics = run(dataclasses.replace(config_from_flags(values), verbose=0))
    assert np.isfinite(metrics["test"]["nll_nats"])
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    model = keras.models.load_model(str(tmp_path / "run" / "model.keras"))
    if index == 0:
        assert metrics["flow"] == "linear_mixing" and stored["model"]["init_mixing"] == 0.5
        assert stored["training"]["plugins"] == ["linear_mixing_family"]
        assert model.flow.init_mixing == 0.5
    else:
        assert metrics["dataset"] == f"csv:{tmp_path}/points.csv"
        assert stored["training"]["plugins"] == ["csv_source", "leaky_relu_transform"]
        assert isinstance(model.flow.transform, leaky_relu_transform.LeakyReLUTransform)
