"""Tests of the training command: outputs, resuming, refusals, NaN handling, atomic commits."""

import hashlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import synthetic_tfds

import tfp_flows
from tfp_flows.training import Checkpoint, ConfigError, TrainConfig, TrainingError, run
from tfp_flows.training.callbacks import BestModel, NonFiniteCheck, Patience
from tfp_flows.training.evaluation import IMPORTANCE_SAMPLES

TOY = {"flow": "realnvp", "dataset": "two_moons", "num_examples": 1000, "hidden": 8,
       "num_couplings": 2, "epochs": 2, "checkpoint_steps": 0, "verbose": 0}
DIGITS = {"dataset": "digits", "num_examples": 400, "hidden": 8, "epochs": 2, "batch_size": 32,
          "learning_rate": 1e-2, "checkpoint_steps": 0, "verbose": 0, "temperatures": (0.5, 1.0)}
SIZES = {"glow": {"num_scales": 1, "depth": 1}, "maf": {"num_layers": 1, "num_hidden": 1}}
SUBPROCESS_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def _snapshot(directory) -> dict:
    """Every file under `directory` with its content hash and modification time."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = (
                    hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns)
    return files


def _finite(value) -> bool:
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return not isinstance(value, float) or math.isfinite(value)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("toy"))
    return output_dir, run({**TOY, "output_dir": output_dir})


def test_toy_run_writes_outputs_whose_numbers_the_saved_model_reproduces(toy_run):
    output_dir, metrics = toy_run
    with open(os.path.join(output_dir, "metrics.json")) as f:
        assert json.load(f) == json.loads(json.dumps(metrics))
    for name in ("config.json", "model.keras", "density.png", "training_curve.png"):
        assert os.path.getsize(os.path.join(output_dir, name)) > 0
    assert os.listdir(os.path.join(output_dir, "logs"))
    assert _finite(metrics)
    assert metrics["epochs"] == 2 and metrics["best_epoch"] in (1, 2)
    assert metrics["examples_per_second"] > 0 and metrics["num_parameters"] > 0
    assert metrics["machine"]["cpu_count"] == os.cpu_count()
    # The toy test split is not dequantized, so the saved model must give the same NLL.
    splits = tfp_flows.datasets.load("two_moons", num_examples=1000)
    test = np.concatenate(list(splits.test.as_numpy_iterator()))
    model = keras.models.load_model(os.path.join(output_dir, "model.keras"))
    nll = -float(np.mean(model.log_prob(test)))
    np.testing.assert_allclose(nll, metrics["test"]["nll_nats"], rtol=1e-5)
    np.testing.assert_allclose(metrics["test"]["bits_per_dim"], nll / (2 * math.log(2)),
                               rtol=1e-5)


def test_rerunning_a_finished_run_evaluates_without_training(toy_run):
    output_dir, metrics = toy_run
    again = run({**TOY, "output_dir": output_dir})
    assert again["resumed_from_epoch"] == 2 and again["examples_per_second"] is None
    assert again["test"] == pytest.approx(metrics["test"], rel=1e-6)


@pytest.mark.parametrize("change, difference", [
    ({"flow": "maf", "num_couplings": None, "num_layers": 2}, "flow realnvp -> maf"),
    ({"hidden": 16}, "hidden 8 -> 16"),
    ({"seed": 1}, "seed 0 -> 1"),
    ({"conditional": True}, "conditional False -> True"),
])
def test_a_different_model_is_refused_and_the_directory_left_unchanged(toy_run, change,
                                                                       difference):
    output_dir, _ = toy_run
    before = _snapshot(output_dir)
    with pytest.raises(ConfigError, match="holds a different model") as error:
        run({**TOY, **change, "output_dir": output_dir})
    message = str(error.value)
    assert difference in message and "pick another --output_dir" in message
    assert "\n" not in message
    assert _snapshot(output_dir) == before


@pytest.mark.parametrize("change, difference", [
    ({"learning_rate": 0.01}, "learning_rate 0.001 -> 0.01"),
    ({"batch_size": 32}, "batch_size 64 -> 32"),
    ({"patience": 3}, "patience 10 -> 3"),
    ({"epochs": 1}, "epochs 2 -> 1, and it has trained 2 epochs"),
])
def test_other_training_settings_are_refused_and_the_directory_left_unchanged(toy_run, change,
                                                                               difference):
    output_dir, _ = toy_run
    before = _snapshot(output_dir)
    with pytest.raises(ConfigError, match="was trained with other settings") as error:
        run({**TOY, **change, "output_dir": output_dir})
    message = str(error.value)
    assert difference in message and "--allow_changes" in message and "\n" not in message
    assert _snapshot(output_dir) == before


def test_settings_that_do_not_change_what_is_trained_may_change(toy_run, tmp_path):
    output_dir = tmp_path / "run"
    shutil.copytree(toy_run[0], output_dir)
    metrics = run({**TOY, "checkpoint_steps": 5, "jit_compile": True, "temperatures": (1.0,),
                   "output_dir": str(output_dir)})
    assert metrics["setting_changes"] == []
    training = json.loads((output_dir / "config.json").read_text())["training"]
    assert training["checkpoint_steps"] == 5 and training["jit_compile"]


def test_allow_changes_goes_on_with_the_new_settings_and_records_them(toy_run, tmp_path):
    output_dir = tmp_path / "run"
    shutil.copytree(toy_run[0], output_dir)
    metrics = run({**TOY, "epochs": 3, "learning_rate": 1e-4, "allow_changes": True,
                   "output_dir": str(output_dir)})
    steps_per_epoch = metrics["iterations"] // 3
    change = {"epoch": 2, "step": 0, "iterations": 2 * steps_per_epoch,
              "settings": {"learning_rate": [1e-3, 1e-4]}}
    assert metrics["epochs"] == 3 and metrics["setting_changes"] == [change]
    config = json.loads((output_dir / "config.json").read_text())
    assert config["changes"] == [change] and config["training"]["learning_rate"] == 1e-4
    # The new settings are now the run's own.
    assert run({**TOY, "epochs": 3, "learning_rate": 1e-4,
                "output_dir": str(output_dir)})["setting_changes"] == [change]


def _run_interrupted(config, monkeypatch, at=None) -> None:
    """Runs `config` and interrupts it (as Ctrl-C would) right after the checkpoint commit at
    `at` = (epoch, step), 0-based epoch, or after the first commit when `at` is None."""
    commit = Checkpoint._commit

    def killed(self):
        commit(self)
        if at is None or (self.epoch, self.step) == at:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "_commit", killed)
    with pytest.raises(KeyboardInterrupt):
        run(config)
    monkeypatch.setattr(Checkpoint, "_commit", commit)


def test_the_batch_size_cannot_change_in_the_middle_of_an_epoch(tmp_path, monkeypatch):
    config = {**TOY, "epochs": 1, "checkpoint_steps": 5, "output_dir": str(tmp_path)}
    _run_interrupted(config, monkeypatch)  # after step 5
    before = _snapshot(tmp_path)
    with pytest.raises(ConfigError, match=r"--batch_size can change only between epochs, and .* "
                                          r"stopped 5 steps into epoch 1; finish that epoch "
                                          r"first \(rerun with --batch_size=64 --epochs=1\)"):
        run({**config, "batch_size": 32, "allow_changes": True})
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("name, value, message", [
    ("image_size", True, "--image_size must be an integer or None, got True of type bool"),
    ("num_bits", True, "--num_bits must be an integer, got True of type bool"),
    ("epochs", 2.0, "--epochs must be an integer, got 2.0 of type float"),
    ("learning_rate", "0.01", "--learning_rate must be a number, got '0.01' of type str"),
    ("learning_rate", math.inf, "--learning_rate must be a finite number > 0, got inf"),
    ("conditional", 1, "--conditional must be true or false, got 1 of type int"),
    ("temperatures", "0.5", "--temperatures must be a sequence, each item a number, got '0.5'"),
    ("temperatures", (0.5, None),
     "--temperatures must be a sequence, each item a number, got (0.5, None)"),
    ("dataset", None, "--dataset must be a string, got None of type NoneType"),
])
def test_a_setting_of_the_wrong_type_is_a_one_line_error(tmp_path, name, value, message):
    with pytest.raises(ConfigError) as error:
        run({**TOY, name: value, "output_dir": str(tmp_path / "run")})
    assert str(error.value) == message
    assert not (tmp_path / "run").exists()


def test_numpy_numbers_are_taken_as_python_ones(tmp_path):
    metrics = run({**TOY, "epochs": np.int64(1), "learning_rate": np.float32(1e-3),
                   "output_dir": str(tmp_path)})
    assert metrics["epochs_requested"] == 1
    training = json.loads((tmp_path / "config.json").read_text())["training"]
    assert training["epochs"] == 1 and training["learning_rate"] == pytest.approx(1e-3)


@pytest.mark.parametrize("flow", ["glow", "maf"])
def test_image_run_writes_a_sample_grid(tmp_path, flow):
    metrics = run({**DIGITS, **SIZES[flow], "flow": flow, "output_dir": str(tmp_path)})
    # maf sees flattened images; the metrics and the samples keep the image shape.
    assert metrics["event_shape"] == [8, 8, 1] and metrics["num_levels"] == 17
    assert _finite(metrics)
    history = json.loads((tmp_path / "backup" / "state.json").read_text())["history"]
    assert history[1]["val_bits_per_dim"] < history[0]["val_bits_per_dim"]
    from matplotlib.image import imread
    grid = imread(os.path.join(tmp_path, "samples.png"))
    assert grid.ndim == 3 and grid.shape[0] > 50


@pytest.mark.parametrize("change, fragment", [
    ({"flow": "vae"}, "unknown --flow 'vae'"),
    ({"dataset": "no_such_dataset"}, "unknown dataset 'no_such_dataset'"),
    ({"dataset": "/nonexistent/data.npz"}, "does not exist"),
    ({"flow": "maf", "num_couplings": None, "depth": 3}, "--depth does not apply to maf"),
    ({"dataset": "digits", "flow": "glow", "num_couplings": None, "num_scales": 4},
     "divisible by 16"),
    ({"flow": "nice", "transform": "spline"}, "--transform does not apply to nice on vectors"),
    ({"flow": "glow", "num_couplings": None, "bins": 4}, "'affine' takes no option 'bins'"),
    ({"flow": "nsf", "transform": "affine"}, "NSF couplings are splines"),
    ({"dataset": "digits", "flow": "glow", "num_couplings": None, "levels": 1, "num_scales": 1},
     "--levels is the deprecated name of --num_scales"),
    ({"epochs": 0}, "--epochs must be a positive integer"),
    ({"dequantization": "gaussian"},
     "--dequantization must be uniform, a registered dequantizer (variational"),
    ({"dequantization": "variational"}, "--dequantization=variational learns the noise of "
                                        "discrete pixels, so it needs images with pixel levels; "
                                        "two_moons holds vectors: use --dequantization=uniform"),
])
def test_bad_input_is_a_one_line_error_and_writes_nothing(tmp_path, change, fragment):
    output_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as error:
        run({**TOY, **change, "output_dir": str(output_dir)})
    assert fragment in str(error.value) and "\n" not in str(error.value)
    assert not output_dir.exists()


def test_command_line_error_is_one_line_with_exit_code_2(tmp_path):
    output_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "tfp_flows.train", "--dataset=no_such_dataset",
         f"--output_dir={output_dir}"], capture_output=True, text=True, env=SUBPROCESS_ENV,
        timeout=120)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unknown dataset 'no_such_dataset'")
    assert "Traceback" not in result.stderr
    assert not output_dir.exists()


def test_nan_in_the_data_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(600, 2)), rng.normal(size=(100, 2))
    np.savez(data, x_train=x_train, x_test=x_test)
    config = {**TOY, "dataset": str(data), "num_examples": None, "epochs": 1,
              "output_dir": str(tmp_path / "run")}
    run(config)
    before = _snapshot(tmp_path / "run")
    x_train[::7] = np.nan
    np.savez(data, x_train=x_train, x_test=x_test)
    expected = r"training data holds NaN or Inf values \(at epoch 2 step 1\).*\(after 1 epoch"
    with pytest.raises(TrainingError, match=expected) as error:
        run({**config, "epochs": 2})
    assert "\n" not in str(error.value)
    kept = ("backup", "model.keras", "metrics.json")
    after = _snapshot(tmp_path / "run")
    assert ".lock" not in after
    assert {k: v for k, v in after.items() if k.startswith(kept)} == {
        k: v for k, v in before.items() if k.startswith(kept)}


@pytest.fixture
def live_process():
    """A process that runs until the test ends."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield process
    process.kill()
    process.wait()


def _lock(directory, pid) -> None:
    """Writes the lock file of `directory` as the command running as `pid` on this host would."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w") as f:
        json.dump({"pid": pid, "host": socket.gethostname()}, f)


def test_a_directory_locked_by_a_running_command_is_refused(tmp_path, live_process):
    output_dir = tmp_path / "run"
    _lock(output_dir, live_process.pid)
    before = _snapshot(output_dir)
    with pytest.raises(ConfigError, match=f"{output_dir} is in use by process "
                                          f"{live_process.pid} on host") as error:
        run({**TOY, "epochs": 1, "output_dir": str(output_dir)})
    assert "\n" not in str(error.value)
    assert _snapshot(output_dir) == before


def test_the_lock_of_a_killed_command_is_taken_over_and_released(tmp_path, capfd):
    output_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    _lock(output_dir, process.pid)
    run({**TOY, "epochs": 1, "output_dir": str(output_dir)})
    notice = f"note: taking over the lock {output_dir}/.lock of process {process.pid}, which no"
    assert notice in capfd.readouterr().err
    assert not (output_dir / ".lock").exists()


def test_the_lock_is_released_when_the_run_is_interrupted(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "on_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run({**TOY, "epochs": 1, "output_dir": str(tmp_path)})
    assert (tmp_path / "config.json").exists() and not (tmp_path / ".lock").exists()


def test_a_worker_that_is_not_the_chief_takes_no_lock(tmp_path, monkeypatch, live_process):
    import tensorflow as tf

    _lock(tmp_path, live_process.pid)
    extended = type(tf.distribute.get_strategy().extended)
    monkeypatch.setattr(extended, "should_checkpoint", property(lambda self: False))
    metrics = run({**TOY, "epochs": 1, "output_dir": str(tmp_path)})
    assert metrics["epochs"] == 1 and os.listdir(tmp_path) == [".lock"]


def test_a_second_command_on_a_directory_in_use_exits_2_naming_the_holder(tmp_path,
                                                                          live_process):
    output_dir = tmp_path / "run"
    _lock(output_dir, live_process.pid)
    result = subprocess.run(
        [sys.executable, "-m", "tfp_flows.train", "--num_examples=300", "--epochs=1",
         f"--output_dir={output_dir}"], capture_output=True, text=True, env=SUBPROCESS_ENV,
        timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: {output_dir} is in use by process {live_process.pid} on host")


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _garble(path) -> None:
    path.write_text("[1, 2]")


def _weights(output_dir):
    return next((output_dir / "backup").glob("weights-*.weights.h5"))


@pytest.mark.parametrize("damage, file, message", [
    (_truncate, lambda d: d / "backup" / "state.json",
     r"checkpoint .*state\.json is unreadable \(JSONDecodeError: .*\); remove .*backup to start "
     r"over, or restore it"),
    (_garble, lambda d: d / "backup" / "state.json",
     r"state\.json is unreadable \(expected a JSON object, got a list\)"),
    (_truncate, _weights,
     r"checkpoint .*weights-00000002\.weights\.h5 is unreadable \(OSError: .*\); remove "
     r".*backup to start over"),
    (_garble, _weights, r"weights-00000002\.weights\.h5 is unreadable \(OSError: "),
    (_truncate, lambda d: d / "config.json",
     r"config\.json is unreadable \(JSONDecodeError: .*\); restore it, or pick another "
     r"--output_dir"),
    (_truncate, lambda d: d / "model.keras",
     r"the best model .*model\.keras is unreadable \(BadZipFile: .*\); restore it, or remove "
     r".*backup to start over"),
])
def test_a_damaged_run_directory_is_a_one_line_error_before_training(toy_run, tmp_path, damage,
                                                                      file, message):
    output_dir = tmp_path / "run"
    shutil.copytree(toy_run[0], output_dir)
    damage(file(output_dir))
    before = _snapshot(output_dir / "backup")
    with pytest.raises(ConfigError, match=message) as error:
        run({**TOY, "epochs": 3, "output_dir": str(output_dir)})
    assert "\n" not in str(error.value)
    assert _snapshot(output_dir / "backup") == before
    assert not (output_dir / ".lock").exists()


@pytest.mark.parametrize("output_dir, message", [
    ("file", r"--output_dir .*file is a file, not a directory; pick another --output_dir"),
    ("file/run", r"cannot write in --output_dir .*file/run \(NotADirectoryError: .*\); pick a "
                 r"writable --output_dir"),
    ("read_only", r"cannot write in --output_dir .*read_only \(PermissionError: .*\); pick a "
                  r"writable --output_dir"),
])
def test_an_output_dir_that_cannot_be_written_is_a_one_line_error(tmp_path, monkeypatch,
                                                                  output_dir, message):
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "read_only").mkdir()
    real_open = os.open

    def refuse_the_lock(path, *args, **kwargs):
        if os.path.basename(path) == ".lock":
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    # Root may write anywhere, so os.open plays the refusal of a directory without write
    # permission.
    monkeypatch.setattr(os, "open", refuse_the_lock)
    with pytest.raises(ConfigError, match=message):
        run({**TOY, "epochs": 1, "output_dir": str(tmp_path / output_dir)})


def test_a_truncated_npz_dataset_is_a_one_line_error(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x_train=np.zeros((600, 2)), x_test=np.zeros((100, 2)))
    _truncate(path)
    with pytest.raises(ConfigError, match=r"data\.npz is truncated or corrupt \(BadZipFile: .*\);"
                                          r" write it again with numpy\.savez"):
        run({**TOY, "dataset": str(path), "output_dir": str(tmp_path / "run")})
    assert not (tmp_path / "run").exists()


def _tiny_model():
    model = tfp_flows.realnvp((2,), hidden=4, num_couplings=2)
    model.compile(keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    return model


def _interrupted_save_weights(model):
    original = model.save_weights

    def save_half_then_die(path, overwrite=True):
        original(path, overwrite=overwrite)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        raise KeyboardInterrupt("killed while writing the weights")

    return save_half_then_die


def _die(*args):
    raise KeyboardInterrupt("killed before state.json was replaced")


def test_a_commit_interrupted_at_any_point_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    model = _tiny_model()
    checkpoint = Checkpoint(str(tmp_path / "backup"), str(tmp_path / "model.keras"))
    checkpoint.set_model(model)
    checkpoint._commit()
    committed = [v.numpy().copy() for v in model.weights]
    for variable in model.trainable_variables:
        variable.assign(variable + 1.0)
    # Killed while writing the new weights file, then right before publishing state.json.
    monkeypatch.setattr(model, "save_weights", _interrupted_save_weights(model))
    with pytest.raises(KeyboardInterrupt):
        checkpoint._commit()
    monkeypatch.undo()
    monkeypatch.setattr(os, "replace", _die)
    with pytest.raises(KeyboardInterrupt):
        checkpoint._commit()
    monkeypatch.undo()

    fresh = _tiny_model()
    restored = Checkpoint(str(tmp_path / "backup"), str(tmp_path / "model.keras"))
    restored.set_model(fresh)
    assert restored.restore() and restored.state["commit"] == 1
    for got, want in zip(fresh.weights, committed, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)


def test_restore_brings_back_the_optimizer_and_actnorm_state(tmp_path):
    def glow():
        model = tfp_flows.glow((4, 4, 1), num_scales=1, depth=1, hidden=4, num_levels=17)
        model.compile(keras.optimizers.Adam(1e-3))
        return model

    model = glow()
    model.initialize_from_data(np.random.default_rng(0).uniform(0, 17, (16, 4, 4, 1)))
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(7)
    checkpoint = Checkpoint(str(tmp_path / "backup"), str(tmp_path / "model.keras"))
    checkpoint.set_model(model)
    checkpoint._commit()

    fresh = glow()
    restored = Checkpoint(str(tmp_path / "backup"), str(tmp_path / "model.keras"))
    restored.set_model(fresh)
    assert restored.restore()
    # A restored flag keeps fit from re-initialising the trained ActNorm parameters.
    assert bool(fresh.data_initialized.numpy())
    assert int(fresh.optimizer.iterations.numpy()) == 7
    for got, want in zip(fresh.weights, model.weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_non_finite_weights_are_never_committed(tmp_path):
    model = _tiny_model()
    checkpoint = Checkpoint(str(tmp_path / "backup"), str(tmp_path / "model.keras"))
    checkpoint.set_model(model)
    checkpoint._commit()
    before = _snapshot(tmp_path)
    variable = model.trainable_variables[0]
    variable.assign(variable * np.nan)
    with pytest.raises(TrainingError, match="weights became NaN or Inf"):
        checkpoint._commit()
    assert _snapshot(tmp_path) == before


def _rules(checkpoint, patience):
    """The checkpoint with the rules the training loop gives it, in the loop's order."""
    return keras.callbacks.CallbackList(
        [NonFiniteCheck(checkpoint), BestModel(checkpoint), Patience(checkpoint, patience),
         checkpoint], model=checkpoint.model)


def test_patience_and_the_best_model_survive_a_restart(tmp_path):
    def epoch_end(callbacks, epoch, value):
        # Mark the weights with the epoch, to tell which epoch model.keras holds.
        marked = model.flow.conditioners[0].weights[-1]
        marked.assign(np.full(marked.shape, float(epoch)))
        callbacks.on_epoch_end(epoch, {"loss": 1.0, "bits_per_dim": 1.0, "val_loss": 1.0,
                                       "val_bits_per_dim": value})

    model = _tiny_model()
    first = Checkpoint(str(tmp_path / "backup"), str(tmp_path / "model.keras"))
    first.set_model(model)
    for epoch, value in enumerate([3.0, 2.0, 2.5]):
        epoch_end(_rules(first, patience=2), epoch, value)
    assert not model.stop_training

    second = Checkpoint(str(tmp_path / "backup"), str(tmp_path / "model.keras"))
    second.set_model(model)
    assert second.restore()
    epoch_end(_rules(second, patience=2), 3, 2.6)
    assert model.stop_training and second.state["stopped_early"]
    assert second.state["best_epoch"] == 2
    assert [r["val_bits_per_dim"] for r in second.state["history"]] == [3.0, 2.0, 2.5, 2.6]
    best = keras.models.load_model(str(tmp_path / "model.keras"))
    np.testing.assert_array_equal(best.flow.conditioners[0].weights[-1].numpy(), 1.0)


def test_a_run_resumes_under_mirrored_strategy(tmp_path):
    config = {**TOY, "epochs": 1, "output_dir": str(tmp_path)}
    run(config)
    # The optimizer slots are made and loaded inside the strategy's scope, as mirrored variables.
    resumed = run({**config, "epochs": 2, "strategy": "mirrored"})
    # tests/conftest.py provides two logical CPU devices.
    assert resumed["num_replicas"] == 2
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs"] == 2
    assert _finite(resumed)


# A run of 2 epochs of 9 steps (288 training digits in batches of 32), committed every 4 steps:
# commits 1-3 at iterations 4, 8 and 9 (the epoch end), 4-6 at 13, 17 and 18.
KILLED_RUN = ["--flow=maf", "--dataset=digits", "--num_examples=400", "--num_layers=1",
              "--num_hidden=1", "--hidden=8", "--batch_size=32", "--learning_rate=0.01",
              "--epochs=2", "--checkpoint_steps=4", "--temperatures=1"]
EPOCHS, STEPS_PER_EPOCH = 2, 9
# Where each run is killed, and the commit (epoch, step) it leaves.
KILLS = [("iteration:2", None),    # before the first commit
         ("commit:2", (0, 4)),     # between commit 2's weights and its state.json
         ("iteration:15", (1, 4)),  # mid-epoch, two steps after a commit
         ("epoch_end:2", (1, 8)),  # after epoch 2's validation and best model, before its commit
         ("evaluation", (2, 0))]   # during the final evaluation


def _h5_arrays(path) -> dict:
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_a_run_killed_at_any_point_ends_as_the_run_never_killed(tmp_path):
    resumed, whole, log = tmp_path / "resumed", tmp_path / "whole", tmp_path / "log"
    runner = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(__file__), "forked_train.py"), str(log)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=SUBPROCESS_ENV)

    def run_command(kill_point, output_dir) -> int:
        runner.stdin.write(json.dumps([kill_point, [*KILLED_RUN,
                                                    f"--output_dir={output_dir}"]]) + "\n")
        runner.stdin.flush()
        return int(runner.stdout.readline() or "1")

    try:
        for kill_point, commit in KILLS:
            assert run_command(kill_point, resumed) == -signal.SIGKILL, log.read_text()[-3000:]
            state_path = resumed / "backup" / "state.json"
            if commit is None:
                assert not state_path.exists()
                continue
            state = json.loads(state_path.read_text())
            assert (state["epoch"], state["step"]) == commit
            if kill_point.startswith("commit:"):
                # Killed with the new commit's weights written and its state.json not.
                assert (resumed / "backup" / "weights-00000002.weights.h5").exists()
            assert state["iterations"] == state["epoch"] * STEPS_PER_EPOCH + state["step"]
            assert len(state["history"]) == state["epoch"]
        assert not (resumed / "metrics.json").exists()
        assert run_command(None, resumed) == 0, log.read_text()[-3000:]
        assert run_command(None, whole) == 0, log.read_text()[-3000:]
    finally:
        runner.stdin.close()
        runner.wait(timeout=60)

    final = json.loads((resumed / "backup" / "state.json").read_text())
    reference = json.loads((whole / "backup" / "state.json").read_text())
    assert final["iterations"] == reference["iterations"] == EPOCHS * STEPS_PER_EPOCH
    # The training means of the epochs resumed mid-way count the steps before the kills.
    for got, want in zip(final["history"], reference["history"], strict=True):
        assert got.keys() == want.keys()
        np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-5)
    got, want = (_h5_arrays(next((d / "backup").glob("weights-*.weights.h5")))
                 for d in (resumed, whole))
    assert got.keys() == want.keys()
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    metrics = json.loads((resumed / "metrics.json").read_text())
    expected = json.loads((whole / "metrics.json").read_text())
    assert metrics["iterations"] == expected["iterations"] == EPOCHS * STEPS_PER_EPOCH
    assert metrics["resumed_from_epoch"] == EPOCHS and metrics["resumed_from_step"] == 0
    np.testing.assert_allclose(metrics["test"]["nll_nats"], expected["test"]["nll_nats"],
                               rtol=1e-5)


VARIATIONAL = {**DIGITS, **SIZES["glow"], "flow": "glow", "dequantization": "variational",
               "checkpoint_steps": 4, "temperatures": (1.0,)}


def test_a_variational_run_reports_its_bound_and_resumes_as_the_run_never_stopped(
        tmp_path, monkeypatch):
    whole = run({**VARIATIONAL, "output_dir": str(tmp_path / "whole")})
    assert _finite(whole) and whole["nll_estimate"].startswith("the variational bound")
    weighted = whole["test_importance_weighted"]
    assert weighted["num_samples"] == IMPORTANCE_SAMPLES
    assert weighted["bits_per_dim"] < whole["test"]["bits_per_dim"]  # the tighter estimate
    dequantization = {"name": "variational", "num_couplings": 4, "hidden": 32}
    stored = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert stored["dequantization"] == whole["dequantization"] == dequantization
    model = keras.models.load_model(tmp_path / "whole" / "model.keras")
    assert tfp_flows.dequantizers.serialize(model.dequantizer) == dequantization

    # Stopped 4 steps into epoch 2 (of 9 steps), then resumed by the same command.
    _run_interrupted({**VARIATIONAL, "output_dir": str(tmp_path / "resumed")}, monkeypatch,
                     at=(1, 4))
    resumed = run({**VARIATIONAL, "output_dir": str(tmp_path / "resumed")})
    assert (resumed["resumed_from_epoch"], resumed["resumed_from_step"]) == (1, 4)
    final, reference = (json.loads((tmp_path / d / "backup" / "state.json").read_text())
                        for d in ("resumed", "whole"))
    assert final["iterations"] == reference["iterations"] == 18
    for got, want in zip(final["history"], reference["history"], strict=True):
        np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-5)
    got, want = (_h5_arrays(_weights(tmp_path / d)) for d in ("resumed", "whole"))
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    for key in ("test", "test_importance_weighted"):
        assert resumed[key] == pytest.approx(whole[key], rel=1e-5)

    with pytest.raises(ConfigError, match=r"holds a different model \(dequantization "
                                          r"\{'name': 'variational', .*\} -> uniform\)"):
        run({**VARIATIONAL, "dequantization": "uniform", "output_dir": str(tmp_path / "whole")})


def test_a_run_from_before_the_dequantization_flag_is_uniform(toy_run, tmp_path):
    output_dir = tmp_path / "run"
    shutil.copytree(toy_run[0], output_dir)
    path = output_dir / "config.json"
    stored = json.loads(path.read_text())
    assert stored["dequantization"] == "uniform" and "dequantization" not in stored["training"]
    del stored["dequantization"]
    path.write_text(json.dumps(stored))
    metrics = run({**TOY, "output_dir": str(output_dir)})
    assert metrics["resumed_from_epoch"] == 2 and metrics["dequantization"] == "uniform"
    assert json.loads(path.read_text())["dequantization"] == "uniform"


def _parsed_flags(*argv):
    from absl import flags

    from tfp_flows.train import define_flags

    values = flags.FlagValues()
    define_flags(values)
    values(["train", *argv])
    return values


def test_config_defaults_match_the_flags():
    from tfp_flows.train import config_from_flags

    assert config_from_flags(_parsed_flags()) == TrainConfig()


def test_the_flags_come_from_the_families_declarations():
    from tfp_flows.train import config_from_flags

    values = _parsed_flags("--flow=nsf", "--num_scales=2", "--transform=spline", "--bins=4",
                           "--bound=3", "--conditional")
    assert config_from_flags(values) == TrainConfig(flow="nsf", num_scales=2, transform="spline",
                                                    bins=4, bound=3.0, conditional=True)
    assert "nsf" in values["flow"].help and "nsf" in values["num_couplings"].help


def test_the_levels_flag_still_sets_num_scales_with_a_warning():
    from tfp_flows.train import config_from_flags

    with pytest.warns(FutureWarning, match="--levels is deprecated.*--num_scales"):
        config = config_from_flags(_parsed_flags("--levels=2"))
    assert config.num_scales == 2


def test_nsf_trains_and_its_spline_is_part_of_the_identity(tmp_path):
    config = {**DIGITS, "flow": "nsf", "num_scales": 1, "bins": 4, "epochs": 1,
              "output_dir": str(tmp_path)}
    metrics = run(config)
    assert _finite(metrics) and metrics["flow"] == "nsf"
    model = json.loads((tmp_path / "config.json").read_text())["model"]
    assert model == {"num_scales": 1, "hidden": 8, "num_hidden": 2, "transform": "spline",
                     "bins": 4, "bound": 4.0}
    with pytest.raises(ConfigError, match="bins 4 -> 8"):
        run({**config, "bins": 8})


def test_levels_still_works_and_a_run_written_with_it_resumes(tmp_path):
    config = {**DIGITS, "flow": "glow", "levels": 1, "depth": 1, "epochs": 1,
              "output_dir": str(tmp_path)}
    with pytest.warns(FutureWarning, match="--levels is deprecated"):
        run(config)
    # config.json as the version before --num_scales, --transform and --conditional wrote it.
    path = tmp_path / "config.json"
    stored = json.loads(path.read_text())
    assert stored["model"] == {"num_scales": 1, "depth": 1, "hidden": 8, "lu": True,
                               "split_prior": True, "transform": "affine", "bins": None,
                               "bound": None}
    del stored["conditional"]
    stored["model"] = {"levels": 1, "depth": 1, "hidden": 8}
    path.write_text(json.dumps(stored))
    resumed = run({**config, "levels": None, "num_scales": 1, "epochs": 2})
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs"] == 2


def test_a_maf_image_run_from_when_the_command_flattened_the_images_resumes(tmp_path):
    config = {**DIGITS, **SIZES["maf"], "flow": "maf", "epochs": 1, "output_dir": str(tmp_path)}
    run(config)
    path = tmp_path / "config.json"
    stored = json.loads(path.read_text())
    assert stored["event_shape"] == [8, 8, 1]
    # The command used to flatten the images for MAF and IAF, and stored the vector shape.
    path.write_text(json.dumps({**stored, "event_shape": [64]}))
    resumed = run({**config, "epochs": 2})
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs"] == 2


def test_conditional_toy_run_writes_a_conditional_model(tmp_path):
    metrics = run({**TOY, "dataset": "eight_gaussians", "conditional": True,
                   "output_dir": str(tmp_path)})
    assert _finite(metrics) and metrics["num_classes"] == 8
    assert os.path.getsize(tmp_path / "density.png") > 0
    assert json.loads((tmp_path / "config.json").read_text())["conditional"] is True
    splits = tfp_flows.datasets.load("eight_gaussians", num_examples=1000, labels=True)
    x, labels = (np.concatenate(c) for c in zip(*splits.test.as_numpy_iterator(), strict=True))
    model = keras.models.load_model(os.path.join(tmp_path, "model.keras"))
    assert model.is_conditional and model.flow.num_classes == 8
    nll = -float(np.mean(model.log_prob(x, context=labels)))
    np.testing.assert_allclose(nll, metrics["test"]["nll_nats"], rtol=1e-5)
    # The labels inform the density: the true class is likelier than a wrong one.
    wrong = -float(np.mean(model.log_prob(x, context=(labels + 4) % 8)))
    assert nll < wrong


def test_conditional_image_run_samples_a_row_per_class(tmp_path):
    metrics = run({**DIGITS, **SIZES["maf"], "flow": "maf", "conditional": True, "epochs": 1,
                   "output_dir": str(tmp_path)})
    assert _finite(metrics) and metrics["num_classes"] == 10
    model = keras.models.load_model(os.path.join(tmp_path, "model.keras"))
    assert model.is_conditional
    from matplotlib.image import imread
    grid = imread(os.path.join(tmp_path, "samples.png"))
    assert grid.shape[0] > grid.shape[1] / 3  # ten rows of samples


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A prepared TFDS dataset 'synthetic_images': 40 train and 10 test 16x16x3 images."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    synthetic_tfds.prepare(data_dir)
    return data_dir


def _streamed(tfds_dir, output_dir) -> dict:
    # 36 training images in batches of 8: 4 steps per epoch.
    return {"flow": "glow", "dataset": "synthetic_images", "data_dir": tfds_dir,
            "num_scales": 1, "depth": 1, "hidden": 8, "epochs": 2, "batch_size": 8,
            "num_bits": 5, "crop": 12, "image_size": 4, "shuffle_buffer": 16,
            "checkpoint_steps": 2, "verbose": 0, "temperatures": (1.0,),
            "output_dir": str(output_dir)}


def test_streamed_run_resumed_mid_epoch_trains_the_batches_of_an_uninterrupted_run(
        tfds_dir, tmp_path, monkeypatch):
    whole = run(_streamed(tfds_dir, tmp_path / "whole"))
    assert whole["event_shape"] == [4, 4, 3] and whole["num_levels"] == 32

    _run_interrupted(_streamed(tfds_dir, tmp_path / "resumed"), monkeypatch, at=(1, 2))
    resumed = run(_streamed(tfds_dir, tmp_path / "resumed"))
    assert resumed["resumed_from_epoch"] == 1
    final = json.loads((tmp_path / "resumed" / "backup" / "state.json").read_text())
    # The two steps done before the kill are not trained again.
    assert final["iterations"] == 2 * 4
    reference = json.loads((tmp_path / "whole" / "backup" / "state.json").read_text())
    np.testing.assert_allclose(final["history"][1]["val_bits_per_dim"],
                               reference["history"][1]["val_bits_per_dim"], rtol=1e-5)
    np.testing.assert_allclose(resumed["test"]["nll_nats"], whole["test"]["nll_nats"], rtol=1e-5)


@pytest.mark.parametrize("flag, fragment", [
    ("--num_bits=9", "--num_bits must be in 1..8"),
    ("--crop=0", "--crop must be a positive integer"),
    ("--shuffle_buffer=0", "--shuffle_buffer must be a positive integer"),
    ("--crop=20", "crop=20 is larger than the 16x16 images"),
])
def test_bad_streaming_flags_are_one_line_errors(tfds_dir, tmp_path, flag, fragment):
    from tfp_flows.train import config_from_flags

    config = config_from_flags(_parsed_flags("--flow=glow", "--dataset=synthetic_images",
                                             f"--data_dir={tfds_dir}", "--batch_size=8", flag,
                                             f"--output_dir={tmp_path / 'run'}"))
    with pytest.raises(ConfigError) as error:
        run(config)
    assert fragment in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()
