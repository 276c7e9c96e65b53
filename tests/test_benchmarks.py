"""The benchmark's device matrix, the command that runs on a GPU, checked here at a tiny size."""

import json

import keras
import pytest

from benchmarks import bench


def test_device_matrix_runs_every_cell_and_writes_its_json(tmp_path):
    out = tmp_path / "matrix.json"
    rows = bench.main(["--matrix", "--glow-shape", "4,4,3", "--glow-levels", "1",
                       "--glow-depth", "1", "--glow-hidden", "4", "--glow-batch", "4",
                       "--fit-steps", "2", "--fit-rounds", "1", "--out", str(out)])
    assert list(rows) == ["float32, XLA off", "float32, XLA on", "bfloat16, XLA off",
                          "bfloat16, XLA on"]
    for row in rows.values():
        assert row["train_images_s"] > 0 and row["sample_images_s"] > 0
        assert row["finite_samples"] == 1.0 and row["peak_mib"] is None  # no GPU here
    saved = json.loads(out.read_text())
    assert saved["results"] == json.loads(json.dumps(rows))
    assert "| bfloat16, XLA on |" in saved["table"]
    assert keras.mixed_precision.global_policy().name == "float32"  # never set


def test_gpu_device_is_refused_without_a_gpu(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--device", "gpu"])
    assert "--device gpu needs a GPU" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--fit-rounds", "0"], ["--fit-steps", "-1"],
                                  ["--fit-runs", "in_memory,bogus"],
                                  ["--reversible-depths", "8"], ["--flows", "nsf"],
                                  ["--flows", "glow,bogus"]])
def test_bad_flags_are_refused_by_name(argv, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert argv[0] in capsys.readouterr().err


@pytest.mark.parametrize("flow", ["realnvp", "glow"])
def test_our_side_is_the_registered_family_with_the_peer_size(flow):
    from benchmarks import contenders

    cfg = bench.parse_args(["--flows", flow, "--dim", "4", "--couplings", "2",
                            "--vector-hidden", "8", "--glow-shape", "4,4,1", "--glow-levels", "1",
                            "--glow-depth", "1", "--glow-hidden", "4"])
    ours = contenders.ours(flow, cfg)
    assert ours.model.flow.registered_name == flow
    assert [id(v) for v in ours.variables] == [id(v) for v in ours.model.trainable_variables]
