"""Tests for tfp_flows.datasets."""

from __future__ import annotations

import collections
import gzip
import os
import time

import numpy as np
import pytest
import synthetic_tfds
import tensorflow as tf
import tensorflow_datasets as tfds

from tfp_flows import datasets
from tfp_flows.datasets import idx, streamed
from tfp_flows.datasets import tfds as tfds_source


def _collect(ds: tf.data.Dataset) -> np.ndarray:
    return np.concatenate([batch.numpy() for batch in ds])


def _row_counts(x: np.ndarray) -> collections.Counter:
    return collections.Counter(row.tobytes() for row in x)


def _id_images(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 4x4 images whose first two pixels spell the example id, the rest random."""
    images = rng.integers(0, 256, (len(ids), 4, 4), dtype=np.uint8)
    images[:, 0, 0], images[:, 0, 1] = ids // 256, ids % 256
    return images


def _decode_ids(x: np.ndarray) -> np.ndarray:
    pixels = np.floor(x).astype(np.int64)
    return pixels[:, 0, 0, 0] * 256 + pixels[:, 0, 1, 0]


@pytest.fixture
def id_npz(tmp_path):
    """An .npz of 300 train and 50 test images, each tagged with a unique id."""
    rng = np.random.default_rng(1)
    path = tmp_path / "ids.npz"
    np.savez(path, x_train=_id_images(np.arange(300), rng),
             x_test=_id_images(np.arange(300, 350), rng), y_train=np.arange(300) % 10)
    return str(path)


def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    assert array.dtype == np.uint8
    header = bytes([0, 0, 0x08, array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


@pytest.mark.parametrize("name", datasets.TOY_DATASETS)
def test_toy_arrays_shape_finite_and_seeded(name):
    arrays = datasets.load_arrays(name, seed=3, num_examples=500)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    assert x_train.shape == (400, 2) and x_test.shape == (100, 2)
    assert x_train.dtype == np.float32 and arrays["y_train"].dtype == np.int64
    assert arrays["y_train"].shape == (400,) and arrays["y_test"].shape == (100,)
    assert np.all(np.isfinite(x_train)) and np.all(np.isfinite(x_test))
    # The classic toys live in roughly [-4, 4]^2.
    assert np.all(np.abs(x_train) < 6.0)
    again = datasets.load_arrays(name, seed=3, num_examples=500)
    for key in arrays:
        np.testing.assert_array_equal(arrays[key], again[key])
    other = datasets.load_arrays(name, seed=4, num_examples=500)
    assert not np.array_equal(x_train, other["x_train"])


def test_toy_default_size():
    arrays = datasets.load_arrays("eight_gaussians")
    assert len(arrays["x_train"]) + len(arrays["x_test"]) == 20_000
    assert set(np.unique(arrays["y_train"])) == set(range(8))


def test_toy_load_is_continuous_and_disjoint():
    raw = datasets.load_arrays("two_moons", num_examples=1000)
    splits = datasets.load("two_moons", batch_size=50, num_examples=1000)
    assert splits.event_shape == (2,) and splits.num_levels is None
    assert splits.name == "two_moons"
    assert splits.train.element_spec == tf.TensorSpec((50, 2), tf.float32)
    train, validation = _collect(splits.train), _collect(splits.validation)
    test = _collect(splits.test)
    assert (len(train), len(validation), len(test)) == (700, 80, 200)
    # Continuous data is not dequantized: every row is a raw row, unchanged.
    np.testing.assert_array_equal(test, raw["x_test"])
    # The last incomplete training batch is dropped, so train + validation is within x_train.
    assert not _row_counts(train) + _row_counts(validation) - _row_counts(raw["x_train"])


def test_digits_shapes_levels_and_integer_part():
    raw = datasets.load_arrays("digits")
    assert raw["x_train"].shape[1:] == (8, 8, 1) and raw["x_train"].dtype == np.uint8
    assert len(raw["x_train"]) + len(raw["x_test"]) == 1797
    assert len(raw["x_test"]) == round(0.2 * 1797)
    assert raw["x_train"].max() == 16
    splits = datasets.load("digits", batch_size=32)
    assert splits.event_shape == (8, 8, 1) and splits.num_levels == 17
    assert splits.num_classes == 10
    assert splits.train.element_spec == tf.TensorSpec((32, 8, 8, 1), tf.float32)
    assert splits.test.element_spec == tf.TensorSpec((None, 8, 8, 1), tf.float32)
    test = _collect(splits.test)
    assert test.min() >= 0.0 and test.max() < 17.0
    np.testing.assert_array_equal(np.floor(test), raw["x_test"])
    train = _collect(splits.train)
    assert len(train) == (len(raw["x_train"]) - round(0.1 * len(raw["x_train"]))) // 32 * 32
    assert train.min() >= 0.0 and train.max() < 17.0
    assert not np.array_equal(train, np.floor(train))


def test_digits_num_examples_is_shared_between_train_and_test():
    raw = datasets.load_arrays("digits", num_examples=100)
    assert (len(raw["x_train"]), len(raw["x_test"])) == (80, 20)


def test_npz_images_splits_are_disjoint_and_cover_the_data(id_npz):
    splits = datasets.load(id_npz, batch_size=10, validation_fraction=0.2, seed=5)
    assert splits.event_shape == (4, 4, 1) and splits.num_levels == 256
    train, validation, test = (_collect(ds) for ds in (splits.train, splits.validation,
                                                         splits.test))
    for x in (train, validation, test):
        assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() < 256.0
    train_ids, validation_ids = _decode_ids(train), _decode_ids(validation)
    assert len(validation_ids) == 60 and len(train_ids) == 240
    assert len(set(train_ids)) == 240
    assert not set(train_ids) & set(validation_ids)
    assert set(train_ids) | set(validation_ids) == set(range(300))
    np.testing.assert_array_equal(_decode_ids(test), np.arange(300, 350))
    # The carved validation set depends on the seed.
    other = datasets.load(id_npz, batch_size=10, validation_fraction=0.2, seed=6)
    assert set(_decode_ids(_collect(other.validation))) != set(validation_ids)


def test_npz_integer_part_reproduces_the_raw_pixels(id_npz):
    raw = datasets.load_arrays(id_npz)
    assert raw["x_train"].shape == (300, 4, 4, 1) and raw["x_train"].dtype == np.uint8
    np.testing.assert_array_equal(raw["y_train"], np.arange(300) % 10)
    np.testing.assert_array_equal(raw["y_test"], np.zeros(50))
    splits = datasets.load(id_npz, batch_size=10)
    train = _collect(splits.train)
    np.testing.assert_array_equal(np.floor(train), raw["x_train"][_decode_ids(train)])


def test_train_noise_changes_each_epoch_but_evaluation_is_fixed(id_npz):
    splits = datasets.load(id_npz, batch_size=10, seed=2)
    first, second = _collect(splits.train), _collect(splits.train)
    assert not np.array_equal(_decode_ids(first), _decode_ids(second))  # reshuffled
    first, second = first[np.argsort(_decode_ids(first))], second[np.argsort(_decode_ids(second))]
    np.testing.assert_array_equal(np.floor(first), np.floor(second))
    assert np.mean(first != second) > 0.99  # re-dequantized
    np.testing.assert_array_equal(_collect(splits.validation), _collect(splits.validation))
    np.testing.assert_array_equal(_collect(splits.test), _collect(splits.test))
    # Evaluation noise is per example, so it does not depend on the batch size.
    rebatched = datasets.load(id_npz, batch_size=7, seed=2)
    np.testing.assert_array_equal(_collect(rebatched.test), _collect(splits.test))


def test_pipelines_are_deterministic_given_the_seed(id_npz):
    one, two = (datasets.load(id_npz, batch_size=10, seed=9) for _ in range(2))
    for _ in range(2):
        np.testing.assert_array_equal(_collect(one.train), _collect(two.train))
    np.testing.assert_array_equal(_collect(one.validation), _collect(two.validation))
    other = datasets.load(id_npz, batch_size=10, seed=10)
    assert not np.array_equal(_collect(other.test), _collect(one.test))


def test_array_epochs_are_fixed_by_number_restart_at_any_batch_and_shard_by_batch(id_npz):
    # 270 training images in batches of 10: 27 steps per epoch.
    by_epoch = datasets.load(id_npz, batch_size=10, seed=4).streamed
    epochs = [batch.numpy() for batch in by_epoch.train_batches(0, 3)]
    assert by_epoch.steps_per_epoch == 27 and len(epochs) == 3 * 27
    again = datasets.load(id_npz, batch_size=10, seed=4).streamed.train_batches(0, 3)
    np.testing.assert_array_equal(np.stack([b.numpy() for b in again]), np.stack(epochs))
    resumed = [batch.numpy() for batch in by_epoch.train_batches(1, 3, skip=5)]
    np.testing.assert_array_equal(np.stack(resumed), np.stack(epochs[27 + 5:]))
    first, second = (np.concatenate(epochs[k * 27:(k + 1) * 27]) for k in range(2))
    assert sorted(_decode_ids(first)) == sorted(_decode_ids(second))
    assert not np.array_equal(_decode_ids(first), _decode_ids(second))  # reshuffled
    assert np.mean(first[np.argsort(_decode_ids(first))]
                   != second[np.argsort(_decode_ids(second))]) > 0.99  # re-dequantized
    # Two workers of two replicas each: every global batch of 12, noise included, is that of
    # one process, in per-replica quarters.
    by_epoch = datasets.load(id_npz, batch_size=12, seed=4).streamed
    whole = [batch.numpy() for batch in by_epoch.train_batches(0, 1)]
    shares = [[b.numpy() for b in by_epoch.train_batches(
        0, 1, input_context=tf.distribute.InputContext(2, worker, 4))] for worker in range(2)]
    assert len(whole) == 22 and [len(share) for share in shares] == [44, 44]
    for step, batch in enumerate(whole):
        quarters = [share[2 * step + replica] for share in shares for replica in range(2)]
        np.testing.assert_array_equal(np.concatenate(quarters), batch)


def test_dequantized_top_level_stays_below_num_levels(tmp_path):
    # ~1e6 pixels at 255: float32 rounding of 255 + u to 256 would show up several times.
    path = tmp_path / "white.npz"
    white = np.full((250, 64, 64), 255, np.uint8)
    np.savez(path, x_train=white[:20], x_test=white)
    test = _collect(datasets.load(str(path), batch_size=8).test)
    assert test.max() < 256.0
    assert np.all(np.floor(test) == 255.0)


def test_npz_float_vectors_are_continuous(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "vectors.npz"
    x_train, x_test = rng.normal(size=(120, 3)), rng.normal(size=(30, 3))
    np.savez(path, x_train=x_train, x_test=x_test)
    splits = datasets.load(str(path), batch_size=16)
    assert splits.event_shape == (3,) and splits.num_levels is None
    assert splits.train.element_spec == tf.TensorSpec((16, 3), tf.float32)
    np.testing.assert_array_equal(_collect(splits.test), x_test.astype(np.float32))


def test_npz_missing_array_raises(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((10, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="x_test"):
        datasets.load_arrays(str(path))


def test_a_file_that_is_not_an_npz_gets_no_advice_to_unpickle_it(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("these are not arrays\n")
    with pytest.raises(ValueError, match=r"is not a valid \.npz file .* starts with b'thes'") \
            as info:
        datasets.load_arrays(str(path))
    assert "pickle" not in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_npz_is_reported_as_such(tmp_path, damage):
    path = tmp_path / "vectors.npz"
    np.savez(path, x_train=np.zeros((20, 2), np.float32), x_test=np.zeros((5, 2), np.float32))
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2:]
    else:
        # Inside the x_train member: the zip structure stays whole.
        data[len(data) // 4:len(data) // 4 + 16] = b"x" * 16
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"is truncated or corrupt \(.+\); write it again with "
                                         r"numpy\.savez"):
        datasets.load_arrays(str(path))


def test_object_arrays_are_refused_without_being_unpickled(tmp_path, monkeypatch):
    path = tmp_path / "dicts.npz"
    examples = np.array([{"image": np.zeros((4, 4), np.uint8), "label": 1}] * 10)
    np.savez(path, x_train=examples, x_test=examples[:2])
    monkeypatch.setattr("pickle.load", _unexpected_unpickling)
    with pytest.raises(ValueError, match=r"holds pickled object arrays \(x_train, x_test: Python "
                                         r"objects such as dicts\), which we refuse to load") \
            as info:
        datasets.load_arrays(str(path))
    assert "allow_pickle" not in str(info.value) and "dtype string" not in str(info.value)


def _unexpected_unpickling(*args, **kwargs):
    raise AssertionError("an .npz was unpickled")


@pytest.mark.parametrize("x_train, described", [
    (np.array(["a", "b"] * 10), r"got x_train of strings \(<U1\)"),
    (np.zeros(10, [("image", np.uint8, (4, 4)), ("label", np.int64)]),
     "got x_train of records with fields image, label"),
    (np.float32(3.0), r"x_train must be an array of examples, got a single value \(dtype "
                      r"float32\)"),
])
def test_arrays_that_are_not_numbers_are_described(tmp_path, x_train, described):
    path = tmp_path / "odd.npz"
    np.savez(path, x_train=x_train, x_test=x_train)
    with pytest.raises(ValueError, match=described):
        datasets.load_arrays(str(path))


def test_npz_unsupported_dtype_raises(tmp_path):
    path = tmp_path / "ints.npz"
    np.savez(path, x_train=np.zeros((10, 4, 4), np.int32), x_test=np.zeros((5, 4, 4), np.int32))
    with pytest.raises(ValueError, match="expected uint8 images"):
        datasets.load_arrays(str(path))


@pytest.mark.parametrize("compress", [True, False])
def test_idx_directory(tmp_path, compress):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (150, 5, 6), dtype=np.uint8)
    x_test = rng.integers(0, 256, (40, 5, 6), dtype=np.uint8)
    y_train = rng.integers(0, 10, 150, dtype=np.uint8)
    y_test = rng.integers(0, 10, 40, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    for base, array in [("train-images-idx3-ubyte", x_train), ("train-labels-idx1-ubyte", y_train),
                        ("t10k-images-idx3-ubyte", x_test), ("t10k-labels-idx1-ubyte", y_test)]:
        _write_idx(tmp_path / (base + suffix), array, compress)
    raw = datasets.load_arrays(str(tmp_path))
    np.testing.assert_array_equal(raw["x_train"], x_train[..., None])
    np.testing.assert_array_equal(raw["y_test"], y_test)
    assert raw["y_train"].dtype == np.int64
    splits = datasets.load(str(tmp_path), batch_size=16)
    assert splits.event_shape == (5, 6, 1) and splits.num_levels == 256
    assert splits.train.element_spec == tf.TensorSpec((16, 5, 6, 1), tf.float32)
    test = _collect(splits.test)
    assert test.min() >= 0.0 and test.max() < 256.0
    np.testing.assert_array_equal(np.floor(test), x_test[..., None])
    truncated = datasets.load_arrays(str(tmp_path), num_examples=19)
    assert (len(truncated["x_train"]), len(truncated["x_test"])) == (15, 4)


def test_idx_bad_magic_and_missing_file_raise(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04" + bytes(16))
    with pytest.raises(ValueError, match="not an IDX file"):
        idx.read_idx(str(tmp_path / "train-images-idx3-ubyte"))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte"):
        datasets.load_arrays(str(tmp_path))


# `make test` installs the package where it can (root with apt); CI must have it, so there the
# test runs (and fails if it is missing) instead of skipping.
@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist")
                    and os.environ.get("CI") != "true",
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist():
    splits = datasets.load("/usr/share/datasets/fashion-mnist", batch_size=128,
                           num_examples=1000)
    assert splits.event_shape == (28, 28, 1) and splits.num_levels == 256
    assert next(iter(splits.train)).shape == (128, 28, 28, 1)


def test_tfds_mock_mnist(tmp_path, monkeypatch):
    # mock_data turns download_and_prepare into a no-op, so the "download" path is safe.
    monkeypatch.setattr(tfds_source, "network_available", lambda: True)
    with tfds.testing.mock_data(num_examples=40):
        raw = datasets.load_arrays("mnist", data_dir=str(tmp_path))
        splits = datasets.load("mnist", batch_size=8, data_dir=str(tmp_path))
    assert raw["x_train"].shape[1:] == (28, 28, 1) and raw["x_train"].dtype == np.uint8
    assert len(raw["x_train"]) + len(raw["x_test"]) == 40
    assert splits.event_shape == (28, 28, 1) and splits.num_levels == 256
    assert splits.train.element_spec == tf.TensorSpec((8, 28, 28, 1), tf.float32)
    train = _collect(splits.train)
    assert len(train) == 24 and train.min() >= 0.0 and train.max() < 256.0
    assert _collect(splits.test).shape == (8, 28, 28, 1)


def test_tfds_prepared_data_dir_is_read_without_network(tmp_path, monkeypatch):
    # DummyMnist writes a real prepared dataset (20 train, 20 test examples) without downloading.
    tfds.testing.DummyMnist(data_dir=str(tmp_path)).download_and_prepare()
    monkeypatch.setattr(tfds_source, "network_available", _unexpected_network_check)
    raw = datasets.load_arrays("dummy_mnist", data_dir=str(tmp_path))
    assert raw["x_train"].shape == (20, 28, 28, 1) and raw["x_test"].shape == (20, 28, 28, 1)
    assert raw["x_train"].dtype == np.uint8 and raw["y_train"].dtype == np.int64
    truncated = datasets.load_arrays("dummy_mnist", data_dir=str(tmp_path), num_examples=10)
    np.testing.assert_array_equal(truncated["x_test"], raw["x_test"][:5])
    splits = datasets.load("dummy_mnist", data_dir=str(tmp_path), batch_size=4)
    assert splits.event_shape == (28, 28, 1) and splits.num_levels == 256
    np.testing.assert_array_equal(np.floor(_collect(splits.test)), raw["x_test"])


def _unexpected_network_check() -> bool:
    raise AssertionError("a prepared dataset must not trigger a network check")


def test_tfds_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "network_available", lambda: False)
    start = time.monotonic()
    with pytest.raises(ValueError, match="could not be downloaded") as info:
        datasets.load("mnist", data_dir=str(tmp_path))
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert "\n" not in message and "IDX" in message and ".npz" in message
    assert "data_dir" in message


def test_network_check_is_bounded():
    start = time.monotonic()
    assert isinstance(tfds_source.network_available(), bool)
    assert time.monotonic() - start < 5.0


def test_unknown_name_raises_one_line():
    with pytest.raises(ValueError, match="unknown dataset 'no_such_dataset_xyz'") as info:
        datasets.load("no_such_dataset_xyz")
    message = str(info.value)
    assert "\n" not in message and "digits" in message and "two_spirals" in message


@pytest.mark.parametrize("name", ["/no/such/dir", "missing.npz", "./no_such_dir"])
def test_missing_path_raises(name):
    with pytest.raises(ValueError, match="does not exist") as info:
        datasets.load(name)
    assert name.lstrip("./") in str(info.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size"),
    ({"validation_fraction": 0.0}, "validation_fraction"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"seed": -1}, "seed"),
    ({"num_examples": 1}, "num_examples"),
    ({"batch_size": 1000}, "fewer than batch_size=1000"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.load("circles", **{"num_examples": 500, **kwargs})


def _collect_pairs(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    return tuple(np.concatenate(column) for column in zip(*batches, strict=True))


def test_labels_pipelines_pair_each_example_with_its_label_and_keep_the_noise(id_npz):
    plain = datasets.load(id_npz, batch_size=10, seed=2)
    splits = datasets.load(id_npz, batch_size=10, seed=2, labels=True)
    assert splits.num_classes == 10
    assert splits.train.element_spec == (tf.TensorSpec((10, 4, 4, 1), tf.float32),
                                         tf.TensorSpec((10,), tf.int64))
    for name in ("train", "validation"):
        x, y = _collect_pairs(getattr(splits, name))
        np.testing.assert_array_equal(y, _decode_ids(x) % 10)
        # The same examples in the same order with the same noise as without labels.
        np.testing.assert_array_equal(x, _collect(getattr(plain, name)))
    np.testing.assert_array_equal(_collect_pairs(splits.validation)[0],
                                  _collect_pairs(splits.validation)[0])
    x, y = _collect_pairs(splits.test)
    np.testing.assert_array_equal(x, _collect(plain.test))
    np.testing.assert_array_equal(y, np.zeros(50))


def test_toy_labels_are_the_mixture_components():
    raw = datasets.load_arrays("eight_gaussians", num_examples=500)
    splits = datasets.load("eight_gaussians", batch_size=50, num_examples=500, labels=True)
    assert splits.num_classes == 8
    x, y = _collect_pairs(splits.test)
    np.testing.assert_array_equal(x, raw["x_test"])
    np.testing.assert_array_equal(y, raw["y_test"])


def test_labels_need_a_source_with_classes(tmp_path):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, x_train=np.zeros((100, 4, 4), np.uint8), x_test=np.zeros((10, 4, 4), np.uint8))
    assert datasets.load(str(path), batch_size=8).num_classes == 1
    with pytest.raises(ValueError, match="no class labels to condition on"):
        datasets.load(str(path), batch_size=8, labels=True)


# ----------------------------------------------------------------------------- streaming

def _ids(x: np.ndarray) -> np.ndarray:
    """The example ids that tests/synthetic_tfds.py spells in the first pixel (8-bit data)."""
    pixels = np.floor(x).astype(np.int64)
    return pixels[:, 0, 0, 0] * 256 + pixels[:, 0, 0, 1]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A prepared TFDS dataset 'synthetic_images': 40 train and 10 test 16x16x3 images."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    synthetic_tfds.prepare(data_dir)
    return data_dir


def _stream(data_dir, **kwargs):
    return datasets.load("synthetic_images", data_dir=data_dir,
                         **{"batch_size": 8, "labels": True, **kwargs})


def test_streamed_tfds_splits_labels_and_fixed_evaluation_noise(tfds_dir, monkeypatch):
    monkeypatch.setattr(tfds_source, "network_available", _unexpected_network_check)
    splits = _stream(tfds_dir)
    assert splits.streamed is not None and splits.streamed.steps_per_epoch == 36 // 8
    assert splits.event_shape == (16, 16, 3) and splits.num_levels == 256
    assert splits.num_classes == 4
    assert splits.train.element_spec == (tf.TensorSpec((8, 16, 16, 3), tf.float32),
                                         tf.TensorSpec((8,), tf.int64))
    # validation holds out the last 10% of TFDS's train split; test is TFDS's test split.
    train_x, train_y = _collect_pairs(splits.train)
    validation_x, validation_y = _collect_pairs(splits.validation)
    test_x, test_y = _collect_pairs(splits.test)
    assert (len(train_x), len(validation_x), len(test_x)) == (32, 4, 10)
    assert set(_ids(test_x)) == set(range(40, 50))
    train_ids, validation_ids = set(_ids(train_x)), set(_ids(validation_x))
    assert not train_ids & validation_ids and train_ids | validation_ids <= set(range(40))
    for x, y in [(train_x, train_y), (validation_x, validation_y), (test_x, test_y)]:
        np.testing.assert_array_equal(y, _ids(x) % 4)
        assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() < 256.0
    for ids, x in [(_ids(test_x), test_x), (_ids(train_x), train_x)]:
        expected = np.stack([synthetic_tfds.image(i, (16, 16, 3), 0) for i in ids])
        np.testing.assert_array_equal(np.floor(x), expected)
    # Fixed evaluation noise: identical passes, different for every example.
    np.testing.assert_array_equal(_collect_pairs(splits.test)[0], test_x)
    noise = (test_x - np.floor(test_x)).reshape(len(test_x), -1)
    assert len({row.tobytes() for row in noise}) == len(test_x)


def test_streamed_training_noise_and_order_change_each_epoch(tfds_dir):
    splits = _stream(tfds_dir, labels=False, shuffle_buffer=64)
    first, second = _collect(splits.train), _collect(splits.train)
    assert not np.array_equal(_ids(first), _ids(second))
    common = sorted(set(_ids(first)) & set(_ids(second)))
    by_id = [{i: x for i, x in zip(_ids(xs), xs, strict=True)} for xs in (first, second)]
    for i in common:
        np.testing.assert_array_equal(np.floor(by_id[0][i]), np.floor(by_id[1][i]))
        assert not np.array_equal(by_id[0][i], by_id[1][i])


def test_streamed_epochs_are_fixed_by_number_and_restart_at_any_batch(tfds_dir):
    streamed = _stream(tfds_dir, labels=False, shuffle_buffer=64).streamed
    epochs = [batch.numpy() for batch in streamed.train_batches(0, 3)]
    assert len(epochs) == 3 * streamed.steps_per_epoch
    again = [batch.numpy() for batch in _stream(tfds_dir, labels=False,
                                                shuffle_buffer=64).streamed.train_batches(0, 3)]
    np.testing.assert_array_equal(np.stack(again), np.stack(epochs))
    resumed = [batch.numpy() for batch in streamed.train_batches(1, 3, skip=2)]
    np.testing.assert_array_equal(np.stack(resumed), np.stack(epochs[4 + 2:]))
    first, second = (np.concatenate(epochs[k * 4:(k + 1) * 4]) for k in range(2))
    assert not np.array_equal(_ids(first), _ids(second))


def test_streamed_shards_are_disjoint_and_cover_the_training_split(tfds_dir):
    streamed = _stream(tfds_dir, labels=False, batch_size=4).streamed
    seen = []
    for shard in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=shard,
                                             num_replicas_in_sync=2)
        batches = [b.numpy() for b in streamed.train_batches(0, 1, input_context=context)]
        # Per-replica batches, as many on each worker as global steps in the epoch.
        assert len(batches) == streamed.steps_per_epoch == 9
        assert all(len(b) == 2 for b in batches)
        seen.append(set(_ids(np.concatenate(batches))))
    everything = _stream(tfds_dir, labels=False, batch_size=4)
    train_ids = set(range(40)) - set(_ids(_collect(everything.validation)))
    assert not seen[0] & seen[1] and seen[0] | seen[1] == train_ids


def test_streamed_num_bits_crop_and_resize(tfds_dir):
    full = _collect_pairs(_stream(tfds_dir).test)[0]
    five = _collect_pairs(_stream(tfds_dir, num_bits=5).test)[0]
    assert _stream(tfds_dir, num_bits=5).num_levels == 32
    assert five.min() >= 0.0 and five.max() < 32.0
    np.testing.assert_array_equal(np.floor(five), np.floor(full) // 8)
    cropped = _stream(tfds_dir, crop=10)
    assert cropped.event_shape == (10, 10, 3)
    np.testing.assert_array_equal(np.floor(_collect_pairs(cropped.test)[0]),
                                  np.floor(full)[:, 3:13, 3:13])
    resized = _stream(tfds_dir, crop=12, image_size=6)
    assert resized.event_shape == (6, 6, 3)
    assert resized.train.element_spec[0] == tf.TensorSpec((8, 6, 6, 3), tf.float32)
    assert _collect_pairs(resized.test)[0].shape == (10, 6, 6, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_bits": 0}, "num_bits must be an integer in 1..8.*got 0"),
    ({"num_bits": 9}, "num_bits must be an integer in 1..8.*got 9"),
    ({"crop": 17}, "crop=17 is larger than the 16x16 images"),
    ({"image_size": 0}, "image_size must be None or a positive integer, got 0"),
    ({"shuffle_buffer": 0}, "shuffle_buffer must be a positive integer, got 0"),
    ({"batch_size": 64}, "fewer than batch_size=64"),
])
def test_streamed_bad_options_raise(tfds_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _stream(tfds_dir, **kwargs)


def test_streaming_options_and_stream_are_refused_for_array_sources():
    with pytest.raises(ValueError, match="num_bits=5 applies to streamed sources only"):
        datasets.load("digits", num_bits=5)
    with pytest.raises(ValueError, match="stream=True applies to TFDS datasets"):
        datasets.load("digits", stream=True)


def test_stream_false_reads_a_tfds_dataset_into_arrays(tfds_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("streamed")

    monkeypatch.setattr(streamed, "stream", refuse)
    splits = datasets.load("synthetic_images", data_dir=tfds_dir, batch_size=8, stream=False)
    assert splits.event_shape == (16, 16, 3)


def test_offline_unprepared_tfds_error_says_tfds_needs_the_network(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "network_available", lambda: False)
    with pytest.raises(ValueError, match="TFDS needs the network to download and prepare it"):
        datasets.load("mnist", data_dir=str(tmp_path), num_bits=5)


def _png(index: int, shape=(12, 10, 3)) -> bytes:
    return tf.io.encode_png(synthetic_tfds.image(index, shape, 0)).numpy()


def test_tfrecord_directory_is_split_by_record_index(tmp_path):
    # 30 records in three files; tf.train.Example with an encoded 'image' and a 'label'.
    for part in range(3):
        with tf.io.TFRecordWriter(str(tmp_path / f"data-{part}.tfrecord")) as writer:
            for index in range(part * 10, part * 10 + 10):
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png(index)])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[index % 3])),
                })).SerializeToString())
    splits = datasets.load(str(tmp_path), batch_size=2, labels=True, validation_fraction=0.1)
    assert splits.streamed is not None and splits.event_shape == (12, 10, 3)
    assert splits.num_classes == 3 and splits.num_levels == 256
    parts = [_collect_pairs(getattr(splits, name)) for name in ("train", "validation", "test")]
    ids = [_ids(x) for x, _ in parts]
    # test: every 5th record (floor(30 * 0.2) = 6); validation: floor(24 * 0.1) = 2 of the rest.
    assert [len(i) for i in ids] == [22, 2, 6]
    assert set(ids[2]) == {4, 9, 14, 19, 24, 29}
    assert set(np.concatenate(ids)) == set(range(30))
    for (x, y), i in zip(parts, ids, strict=True):
        np.testing.assert_array_equal(y, i % 3)
        np.testing.assert_array_equal(
            np.floor(x), np.stack([synthetic_tfds.image(k, (12, 10, 3), 0) for k in i]))


def test_image_directory_is_streamed_recursively(tmp_path):
    for index in range(20):
        folder = tmp_path / f"group{index % 2}"
        folder.mkdir(exist_ok=True)
        (folder / f"{index:03d}.png").write_bytes(_png(index))
    splits = datasets.load(str(tmp_path), batch_size=3, image_size=8, num_bits=4)
    assert splits.event_shape == (8, 8, 3) and splits.num_levels == 16
    assert splits.num_classes == 1 and splits.streamed.steps_per_epoch == 15 // 3
    x = _collect(splits.train)
    assert x.shape == (15, 8, 8, 3) and x.min() >= 0.0 and x.max() < 16.0
    assert (len(_collect(splits.validation)), len(_collect(splits.test))) == (1, 4)


def test_bad_directories_raise_naming_the_directory_or_file(tmp_path):
    with pytest.raises(ValueError, match="holds no dataset files; expected MNIST-style IDX"):
        datasets.load(str(tmp_path))
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    with pytest.raises(ValueError, match="has no readable records; expected"):
        datasets.load(str(tmp_path))
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"a\.png: expected a PNG or JPEG image, got text"):
        datasets.load(str(images))

