"""Tests of the training command's plugins (--plugin) and family arguments (--flow_args)."""

import json
import sys

import keras
import pytest

from tfp_flows import FAMILIES
from tfp_flows.training import ConfigError, TrainConfig, run

PLUGIN = "tfp_flows_test_plugin"
# A family of its own with a float argument, which no named flag knows; importing the module
# also counts its imports, to tell whether a run imported it.
PLUGIN_SOURCE = '''
from tfp_flows import NICE, Argument, register_family

IMPORTS = [1]


@register_family("shifted_nice")
class ShiftedNICE(NICE):
    """NICE that records a float `shift` in its config."""

    arguments = (*NICE.arguments, Argument("shift", float, 0.0, "A number it records."))
'''
TOY = {"dataset": "two_moons", "num_examples": 300, "hidden": 8, "num_couplings": 2,
       "epochs": 1, "checkpoint_steps": 0, "verbose": 0}


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A directory on sys.path holding the plugin module (not yet imported); the families and
    the modules are as before once the test ends."""
    directory = tmp_path / "plugins"
    directory.mkdir()
    (directory / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(directory))
    monkeypatch.setattr(FAMILIES, "_entries", dict(FAMILIES.items()))
    monkeypatch.delitem(sys.modules, PLUGIN, raising=False)
    yield directory
    sys.modules.pop(PLUGIN, None)


def test_a_plugin_family_trains_with_its_float_argument_and_a_rerun_imports_it_again(
        plugin_path, tmp_path, monkeypatch):
    output_dir = tmp_path / "run"
    config = {**TOY, "flow": "shifted_nice", "flow_args": {"shift": "0.5"},
              "plugins": (PLUGIN,), "output_dir": str(output_dir)}
    metrics = run(config)
    assert metrics["flow"] == "shifted_nice" and metrics["epochs"] == 1
    stored = json.loads((output_dir / "config.json").read_text())
    assert stored["model"] == {"num_couplings": 2, "hidden": 8, "num_hidden": 5, "shift": 0.5}
    assert stored["training"]["plugins"] == [PLUGIN]
    assert stored["training"]["flow_args"] == {"shift": 0.5}
    shift = keras.models.load_model(str(output_dir / "model.keras")).flow.shift
    assert shift == 0.5 and isinstance(shift, float)
    # Another value of the argument is another model.
    with pytest.raises(ConfigError, match=r"holds a different model \(shift 0.5 -> 0.25\)"):
        run({**config, "flow_args": {"shift": 0.25}})

    # A new process: neither the module nor its family is known until the run imports them.
    del sys.modules[PLUGIN]
    monkeypatch.setattr(FAMILIES, "_entries", {k: v for k, v in FAMILIES.items()
                                               if k != "shifted_nice"})
    resumed = run({**config, "plugins": (), "epochs": 2})
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs"] == 2
    assert PLUGIN in sys.modules and "shifted_nice" in FAMILIES
    stored = json.loads((output_dir / "config.json").read_text())
    assert stored["training"]["plugins"] == [PLUGIN]


def test_an_unknown_family_names_the_families_of_the_plugins_too(plugin_path, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown --flow 'vae'; choose one of ffjord, glow, .*, "
                                          r"shifted_nice$"):
        run({**TOY, "flow": "vae", "plugins": (PLUGIN,), "output_dir": str(tmp_path / "run")})
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("plugin, message", [
    ("no_such_plugin_module", r"--plugin 'no_such_plugin_module' cannot be imported "
                              r"\(ModuleNotFoundError: No module named 'no_such_plugin_module'\)"),
    ("broken_plugin", r"--plugin 'broken_plugin' cannot be imported \(RuntimeError: not today\)"),
])
def test_a_plugin_that_cannot_be_imported_is_a_one_line_error_naming_it(
        plugin_path, tmp_path, plugin, message):
    (plugin_path / "broken_plugin.py").write_text("raise RuntimeError('not today')\n")
    try:
        with pytest.raises(ConfigError, match=message) as error:
            run({**TOY, "plugins": (plugin,), "output_dir": str(tmp_path / "run")})
    finally:
        sys.modules.pop("broken_plugin", None)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flow_args, message", [
    ({"shift": "half"}, "--flow_args shift must be a number, got 'half'"),
    ({"shift": True}, "--flow_args shift must be a number, got True of type bool"),
    ({"num_hidden": "2.5"}, "--flow_args num_hidden must be an integer, got '2.5'"),
    ({"depth": "2"}, "--flow_args names 'depth', which --flow shifted_nice does not take; it "
                     "takes num_couplings, hidden, num_hidden, shift"),
    ({"hidden": "16"}, "hidden is given twice, as --hidden and in --flow_args; give it once"),
])
def test_bad_flow_args_are_one_line_errors_before_any_data_is_read(plugin_path, tmp_path,
                                                                   flow_args, message):
    with pytest.raises(ConfigError) as error:
        run({**TOY, "flow": "shifted_nice", "flow_args": flow_args, "plugins": (PLUGIN,),
             "output_dir": str(tmp_path / "run")})
    assert str(error.value) == message
    assert not (tmp_path / "run").exists()


def test_a_run_written_before_plugins_existed_resumes(tmp_path):
    config = {**TOY, "flow": "nice", "output_dir": str(tmp_path)}
    run(config)
    path = tmp_path / "config.json"
    stored = json.loads(path.read_text())
    # config.json as the version before --plugin and --flow_args wrote it.
    del stored["training"]["plugins"], stored["training"]["flow_args"]
    path.write_text(json.dumps(stored))
    resumed = run({**config, "epochs": 2})
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs"] == 2
    assert json.loads(path.read_text())["training"]["plugins"] == []


def _parsed_flags(*argv):
    from absl import flags

    from tfp_flows.train import define_flags

    values = flags.FlagValues()
    define_flags(values)
    values(["train", *argv])
    return values


def test_plugin_is_repeatable_and_flow_args_are_name_value_pairs():
    from tfp_flows.train import config_from_flags

    values = _parsed_flags("--plugin=first", "--plugin=second.module", "--flow=my_flow",
                           "--flow_args=shift=0.5, scale = 2")
    assert config_from_flags(values) == TrainConfig(
        flow="my_flow", plugins=("first", "second.module"),
        flow_args={"shift": "0.5", "scale": "2"})
    assert "name=value" in values["flow_args"].help


@pytest.mark.parametrize("flow_args, message", [
    ("shift", "--flow_args must be name=value pairs separated by commas, got 'shift'"),
    ("=1", "--flow_args must be name=value pairs separated by commas, got '=1'"),
    ("shift=1,shift=2", "--flow_args gives shift twice"),
])
def test_malformed_flow_args_are_one_line_errors(flow_args, message):
    from tfp_flows.train import config_from_flags

    with pytest.raises(ConfigError) as error:
        config_from_flags(_parsed_flags(f"--flow_args={flow_args}"))
    assert str(error.value) == message

