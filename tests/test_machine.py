"""The machine record written beside every benchmark and experiment number."""

import json
import os
import pathlib

import pytest

from tfp_flows import machine

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The committed records that hold a machine, by path.
RECORDS = {f"{path.parent.parent.name}/{path.name}": record["machine"]
           for folder in ("benchmarks", "experiments")
           for path in sorted((ROOT / folder / "results").glob("*.json"))
           if "machine" in (record := json.loads(path.read_text()))}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_new_record_has_every_machine_key_of_a_committed_one(name):
    committed = dict(RECORDS[name])
    # A key its script adds beside the record (serving_example's oneDNN switch) aside.
    committed.pop("tf_enable_onednn_opts", None)
    assert set(committed) <= set(machine.describe())


def test_describe_reports_this_machine():
    record = machine.describe()
    assert record["logical_cores"] == record["cores"] == record["cpu_count"] == os.cpu_count()
    assert record["gpu"] == bool(record["gpus"])
    assert record["load_average_1min"] == record["load_average_1min_at_start"] >= 0
    assert json.loads(json.dumps(record)) == record
