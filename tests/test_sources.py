"""The data-source extension point: a user's source loads and trains like a built-in one,
sources are asked in the documented order, and bad specs and registrations are refused."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tfp_flows
from tfp_flows import datasets

# A user's source of its own: examples/csv_source.py (tests/conftest.py puts examples/ on the
# path), read through its csv: prefix.
import csv_source  # noqa: E402, F401  isort: skip

_RADII = (1.0, 2.0, 3.0)


@datasets.register_source("rings")
class Rings(datasets.ArraySource):
    """Three concentric noisy rings, the ring index as the label."""

    description = "'rings' (three concentric rings, a test source)"

    def recognises(self, spec):
        # 'circles' is a built-in toy's name too: the built-in is asked first and keeps it.
        return spec in ("rings", "circles")

    def read(self, spec, options):
        rng = np.random.default_rng(options.seed)
        n = options.num_examples or 600
        y = rng.integers(0, len(_RADII), n)
        angle = rng.uniform(0.0, 2.0 * np.pi, n)
        x = np.asarray(_RADII)[y, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        x += 0.05 * rng.standard_normal((n, 2))
        return datasets.carve_test(x, y, options.seed)


def _collect(ds):
    return np.concatenate([batch.numpy() for batch in ds])


def test_a_user_source_loads_through_load_and_trains_a_flow_for_a_step():
    raw = datasets.load_arrays("rings", seed=1)
    splits = datasets.load("rings", batch_size=32, seed=1, labels=True)
    assert splits.name == "rings" and splits.event_shape == (2,) and splits.num_levels is None
    assert splits.num_classes == len(_RADII)
    x, y = (np.concatenate(column) for column in zip(*splits.test.as_numpy_iterator(),
                                                     strict=True))
    np.testing.assert_array_equal(x, raw["x_test"])
    np.testing.assert_array_equal(y, raw["y_test"])
    np.testing.assert_allclose(np.hypot(*x.T), np.asarray(_RADII)[y], atol=0.3)

    keras.utils.set_random_seed(0)
    model = tfp_flows.realnvp((2,), num_couplings=2, hidden=8, num_hidden=1,
                              num_classes=splits.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.evaluate(splits.test, verbose=0, return_dict=True)["loss"]
    initial = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(splits.train, epochs=1, steps_per_epoch=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and np.isfinite(before)
    assert any(not np.array_equal(w.numpy(), w0)
               for w, w0 in zip(model.trainable_weights, initial, strict=True))


def test_a_prefixed_spec_reaches_its_source_and_keeps_its_name(tmp_path):
    points = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    path = tmp_path / "points.csv"
    np.savetxt(path, points, delimiter=",")
    splits = datasets.load(f"csv:{path}", batch_size=8)
    assert splits.name == f"csv:{path}" and splits.event_shape == (3,)
    seen = np.concatenate([_collect(splits.train.take(4)), _collect(splits.validation),
                           _collect(splits.test)])
    assert {row.tobytes() for row in seen} <= {row.tobytes() for row in points}
    assert len(_collect(splits.test)) == 10


def test_built_in_sources_are_asked_before_users_unless_named_by_prefix():
    # 'circles' is recognised by the toys and by Rings: the built-in toys read it...
    assert datasets.load_arrays("circles", num_examples=300)["y_train"].max() == 1
    # ...unless the spec names Rings, whose three rings give three labels.
    assert datasets.load_arrays("rings:circles", num_examples=300)["y_train"].max() == 2
    np.testing.assert_array_equal(datasets.load_arrays("toys:circles")["x_test"],
                                  datasets.load_arrays("circles")["x_test"])
    # The sources in the order they are asked: users' after the built-ins, but before tfds,
    # which would take 'rings' as a TFDS name.
    listing = datasets.describe_sources()
    assert listing.index("[digits]") < min(listing.index("[rings]"), listing.index("[csv]"))
    assert listing.endswith("[tfds]")


@pytest.mark.parametrize("spec, problem", [
    ("/no/such/points.csv", "dataset path '/no/such/points.csv' does not exist"),
    ("no_such_dataset_xyz", "unknown dataset 'no_such_dataset_xyz'"),
])
def test_a_spec_no_source_reads_lists_every_source_and_what_it_takes(spec, problem):
    with pytest.raises(ValueError, match=problem) as info:
        datasets.load(spec)
    message = str(info.value)
    assert "\n" not in message
    for name, source in datasets.SOURCES.items():
        assert f"{source.description} [{name}]" in message


def test_a_file_no_source_reads_is_named(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a dataset\n")
    with pytest.raises(ValueError, match=r"no source reads the file .*notes\.txt.*\[csv\]"):
        datasets.load(str(path))


def test_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="'rings' is already registered"):
        @datasets.register_source("rings")
        class OtherRings(Rings):
            pass
    with pytest.raises(ValueError, match="'digits' is already registered"):
        @datasets.register_source("digits")
        class MyDigits(Rings):
            pass
    assert datasets.SOURCES.get("rings") is Rings
    # The same class again (a module imported twice) is harmless.
    assert datasets.register_source("rings")(Rings) is Rings


def test_a_source_needs_a_one_line_description_and_the_contract():
    class Undescribed(datasets.ArraySource):
        def recognises(self, spec):
            return False

        def read(self, spec, options):
            raise AssertionError

    with pytest.raises(ValueError, match="needs a one-line description"):
        datasets.register_source("undescribed")(Undescribed)
    with pytest.raises(TypeError, match="subclass of .*Source"):
        datasets.register_source("not_a_source")(dict)
    assert "undescribed" not in datasets.SOURCES and "not_a_source" not in datasets.SOURCES


def test_load_arrays_refuses_a_source_that_only_streams(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="read by the directory source, which streams it"):
        datasets.load_arrays(str(tmp_path))


def test_user_arrays_are_checked():
    with pytest.raises(ValueError, match=r"y_train must be integer labels of shape \(3,\)"):
        datasets.Arrays(np.zeros((3, 2), np.float32), np.zeros((2, 2), np.float32),
                        y_train=np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"x_train must hold integers in 0\.\.16"):
        datasets.Arrays(np.full((3, 2, 2, 1), 17, np.uint8), np.zeros((2, 2, 2, 1), np.uint8),
                        num_levels=17)


def test_the_training_command_lists_the_registered_sources_in_its_dataset_help():
    from absl import flags

    from tfp_flows.train import define_flags

    values = flags.FlagValues()
    define_flags(values)
    for name, source in datasets.SOURCES.items():
        assert f"{source.description} [{name}]" in values["dataset"].help
