"""Tests of the check of streamed directories: bad files named up front or skipped, shapes and
channels decided by all the images, symbolic links, labels, and the training command's answer."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import datasets
from tfp_flows.datasets.image_headers import image_shape


def _pixels(index: int, shape: tuple[int, int, int]) -> np.ndarray:
    """A random uint8 image whose first two pixels' first channel spell `index`."""
    pixels = np.random.default_rng(index).integers(0, 256, shape, dtype=np.uint8)
    pixels[0, 0, 0], pixels[0, 1, 0] = index // 256, index % 256
    return pixels


def _png(index: int, shape=(8, 8, 3)) -> bytes:
    return tf.io.encode_png(_pixels(index, shape)).numpy()


def _jpeg(index: int, shape=(8, 8, 3)) -> bytes:
    return tf.io.encode_jpeg(_pixels(index, shape)).numpy()


def _ids(x: np.ndarray) -> list[int]:
    """The example ids of images made by `_pixels` (dequantized)."""
    pixels = np.floor(x).astype(np.int64)
    return list(pixels[:, 0, 0, 0] * 256 + pixels[:, 0, 1, 0])


def _split_ids(splits: datasets.Splits) -> list[list[int]]:
    """The sorted example ids of the train, validation and test splits."""
    ids = []
    for name in ("train", "validation", "test"):
        batches = [batch[0] if isinstance(batch, tuple) else batch
                   for batch in getattr(splits, name).as_numpy_iterator()]
        ids.append(sorted(_ids(np.concatenate(batches))) if batches else [])
    return ids


def _image_directory(path, count: int, bad: dict[int, bytes] | None = None, **kwargs):
    """`count` PNG files 000.png... of example ids 0, 1, ..., those in `bad` replaced."""
    path.mkdir(exist_ok=True)
    for index in range(count):
        data = (bad or {}).get(index)
        (path / f"{index:03d}.png").write_bytes(_png(index, **kwargs) if data is None else data)
    return str(path)


def _example(image, label=None) -> bytes:
    feature = {}
    if image is not None:
        feature["image"] = (tf.train.Feature(int64_list=tf.train.Int64List(value=[image]))
                            if isinstance(image, int) else
                            tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])))
    if label is not None:
        feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _tfrecord(path, examples) -> bytes:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example)
    return path.read_bytes()


def _good_records(path, start: int, count: int = 5) -> bytes:
    return _tfrecord(path, [_example(_png(i), i % 2) for i in range(start, start + count)])


# ----------------------------------------------------------------------------- image headers

def _truncations_and_flips(data: bytes, flips: int, seed: int):
    rng = np.random.default_rng(seed)
    for length in range(len(data)):
        yield data[:length]
    for position in rng.integers(0, len(data), flips):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        yield bytes(flipped)


@pytest.mark.parametrize("encode, channels", [(_png, 1), (_png, 2), (_png, 3), (_png, 4),
                                              (_jpeg, 1), (_jpeg, 3)])
def test_an_image_that_passes_the_check_decodes_to_the_shape_it_gives(encode, channels):
    data = encode(channels, shape=(5, 7, channels))
    assert image_shape(data) == tuple(tf.io.decode_image(data).shape) == (5, 7, channels)
    # Every truncation, and for PNG 60 single-bit flips: what the check passes, TF decodes. (A
    # JPEG's tables and entropy-coded data are not decoded by the check.)
    passed = 0
    flips = 60 if encode is _png else 0
    for damaged in _truncations_and_flips(data, flips, seed=channels):
        try:
            shape = image_shape(damaged)
        except ValueError:
            continue
        passed += 1
        assert tuple(tf.io.decode_image(damaged, expand_animations=False).shape) == shape
    assert passed < len(data)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _hand_made_png(colour: int, interlaced: int, rows: bytes, extra: bytes = b"") -> bytes:
    """A 3x2 8-bit PNG of colour type `colour` with the filtered pixel `rows`."""
    header = struct.pack(">IIBBBBB", 3, 2, 8, colour, 0, 0, interlaced)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + extra
            + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b""))


def test_a_palette_and_an_interlaced_png_have_the_shape_tf_decodes():
    palette = _hand_made_png(3, 0, b"\x00\x00\x01\x02\x00\x02\x01\x00",
                             _chunk(b"PLTE", bytes(range(9))) + _chunk(b"tRNS", b"\x80"))
    # The Adam7 passes of a 3x2 image that hold pixels: 1, 4 and 6 (one pixel each), 7 (3).
    interlaced = _hand_made_png(0, 1, b"\x00\x01" b"\x00\x02" b"\x00\x03" b"\x00\x04\x05\x06")
    for data, channels in ((palette, 4), (interlaced, 1)):
        assert image_shape(data) == tuple(tf.io.decode_image(data).shape) == (2, 3, channels)
    short = _hand_made_png(0, 1, b"\x00\x01" b"\x00\x02" b"\x00\x03" b"\x00\x04\x05")
    with pytest.raises(ValueError, match="inflates to 9 bytes, expected 10 for 3x2"):
        image_shape(short)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_image(short)


# ----------------------------------------------------------------------------- bad image files

_PNG = _png(99)
_BAD_IMAGES = {
    "a PNG truncated": (_PNG[:-30], "truncated PNG"),
    "a JPEG truncated": (_jpeg(99)[:-40], "truncated JPEG"),
    "a PNG with a corrupt pixel chunk": (_PNG[:60] + bytes([_PNG[60] ^ 1]) + _PNG[61:],
                                         "corrupt PNG: the CRC of its b'IDAT' chunk"),
    "an empty file": (b"", "expected a PNG or JPEG image, got an empty file"),
    "text": (b"<html>not found</html>",
             "expected a PNG or JPEG image, got text \\('<html>not found</html>'\\)"),
    "a GIF": (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "expected a PNG or JPEG image, got a GIF"),
    "a BMP": (b"BM" + bytes(60), "expected a PNG or JPEG image, got a BMP image"),
}


@pytest.mark.parametrize("bad", _BAD_IMAGES)
def test_a_bad_image_anywhere_is_refused_at_load_naming_the_file(tmp_path, bad):
    data, problem = _BAD_IMAGES[bad]
    # Not the first file, which alone was checked before.
    directory = _image_directory(tmp_path / "images", 10, {6: data})
    with pytest.raises(ValueError, match=rf"has 1 file that cannot be read .*skip_bad_files"
                                         rf".*; the first: .*006\.png: {problem}"):
        datasets.load(directory, batch_size=2)


def test_skipped_image_files_are_named_and_leave_the_others_in_their_splits(tmp_path):
    good = _split_ids(datasets.load(_image_directory(tmp_path / "good", 20), batch_size=1))
    bad = {3: b"", 4: _PNG[:-1]}
    with pytest.warns(UserWarning, match=r"left out 2 files .* the first: .*003\.png: "):
        splits = datasets.load(_image_directory(tmp_path / "bad", 20, bad), batch_size=1,
                               skip_bad_files=True)
    assert [entry.rsplit("/", 1)[1][:7] for entry in splits.skipped] == ["003.png", "004.png"]
    assert "004.png: truncated PNG" in splits.skipped[1]
    # 4 was a test file, 3 a training one; every other file is where it was.
    assert _split_ids(splits) == [[i for i in part if i not in bad] for part in good]


# ----------------------------------------------------------------------------- bad TFRecords

def _damaged_records(tmp_path):
    good = _good_records(tmp_path / "scratch", 0)
    return {
        "no image": ([_example(None, 1)], r"record 0: expected an 'image' feature .* got none"),
        "an int image": ([_example(5, 1)], r"record 0: .* got a int64_list of 1 value"),
        "a bad image": ([_example(_png(1), 1), _example(b"GIF89a", 1)],
                        r"record 1: .*got a GIF"),
        "not an Example": ([b"\xff" * 10], r"record 0: not a tf\.train\.Example"),
        "trailing garbage": (good + b"garbage after the last record",
                             r"record 5: corrupted at byte \d+ of \d+ \(its header or data "
                             r"fails its CRC\)"),
        "truncated": (good[:-50], r"record 4: truncated at byte \d+ of \d+ \(the file ends "
                                  r"inside it\)"),
        "gzipped": (gzip.compress(good), r"record 0: a gzip-compressed file"),
        "zeros": (bytes(64), r"record 0: not a TFRecord file"),
    }


@pytest.mark.parametrize("damage", ["no image", "an int image", "a bad image", "not an Example",
                                    "trailing garbage", "truncated", "gzipped", "zeros"])
def test_a_damaged_tfrecord_file_is_refused_naming_the_file_and_record(tmp_path, damage):
    content, problem = _damaged_records(tmp_path)[damage]
    _good_records(tmp_path / "a.tfrecord", 0)
    path = tmp_path / "b.tfrecord"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _tfrecord(path, content)
    (tmp_path / "scratch").unlink()
    _good_records(tmp_path / "c.tfrecord", 10)
    with pytest.raises(ValueError, match=rf"1 file that cannot be read .*; the first: "
                                         rf".*b\.tfrecord, {problem}"):
        datasets.load(str(tmp_path), batch_size=2)
    with pytest.warns(UserWarning, match=r"left out 1 file"):
        splits = datasets.load(str(tmp_path), batch_size=2, labels=True, skip_bad_files=True)
    assert [entry.split(", record")[0] for entry in splits.skipped] == [str(path)]
    assert sorted(i for part in _split_ids(splits) for i in part) == [*range(5), *range(10, 15)]


# ----------------------------------------------------------------------------- shapes and channels

def test_images_of_several_sizes_need_image_size_or_crop(tmp_path):
    directory = tmp_path / "images"
    _image_directory(directory, 6)
    (directory / "zz.png").write_bytes(_png(6, (12, 16, 3)))
    with pytest.raises(ValueError, match=r"has images of varying size: 8x8 \(.*000\.png\), "
                                         r"12x16 \(.*zz\.png\); pass image_size"):
        datasets.load(str(directory), batch_size=2)
    splits = datasets.load(str(directory), batch_size=2, image_size=4)
    assert splits.event_shape == (4, 4, 3)
    assert sum(len(ids) for ids in _split_ids(splits)) == 7
    assert datasets.load(str(directory), batch_size=2, crop=6).event_shape == (6, 6, 3)
    with pytest.raises(ValueError, match=r"crop=10 is larger than the 8x8 images of .* \(such "
                                         r"as .*000\.png\); expected at most 8"):
        datasets.load(str(directory), batch_size=2, crop=10)


@pytest.mark.parametrize("first, others, chosen, converted", [
    (1, 3, 3, "converting 1 greyscale"),
    (4, 3, 3, "converting 1 RGBA"),
    (2, 3, 3, "converting 1 greyscale\\+alpha"),
    (2, 4, 4, "converting 1 greyscale\\+alpha"),
    (1, 2, 1, "converting 5 greyscale\\+alpha"),
])
def test_the_channels_are_decided_by_all_images_not_the_first(tmp_path, first, others, chosen,
                                                               converted):
    directory = _image_directory(tmp_path / "images", 6, shape=(8, 8, others))
    (tmp_path / "images" / "000.png").write_bytes(_png(0, (8, 8, first)))
    with pytest.warns(UserWarning, match=rf"all are read as .*, {converted} \(such as "):
        splits = datasets.load(directory, batch_size=2)
    assert splits.event_shape == (8, 8, chosen)
    x = np.floor(np.concatenate(list(splits.test.as_numpy_iterator())))
    assert x.shape == (1, 8, 8, chosen)
    # The test image (004.png) as TF decodes it with the chosen channels.
    pixels = _pixels(4, (8, 8, others))
    expected = tf.io.decode_image(tf.io.encode_png(pixels), channels=max(chosen, 3) if
                                  chosen != 1 else 1).numpy()
    if chosen == 1 and others == 2:
        expected = pixels[..., :1]
    np.testing.assert_array_equal(x[0], expected)


def test_images_that_all_have_grey_and_alpha_keep_both_channels(tmp_path):
    directory = _image_directory(tmp_path / "images", 6, shape=(8, 8, 2))
    splits = datasets.load(directory, batch_size=2)
    assert splits.event_shape == (8, 8, 2)
    x = np.floor(np.concatenate(list(splits.test.as_numpy_iterator())))
    np.testing.assert_array_equal(x[0], _pixels(4, (8, 8, 2)))


# ----------------------------------------------------------------------------- symbolic links

def test_a_symlink_loop_adds_no_file_and_no_file_is_in_two_splits(tmp_path):
    directory = tmp_path / "images"
    _image_directory(directory, 20)
    os.symlink(directory, directory / "loop")
    os.symlink(directory / "005.png", directory / "again.png")
    (directory / "sub").mkdir()
    _image_directory(directory / "sub", 2)
    os.symlink(directory / "sub", directory / "sub2")
    ids = _split_ids(datasets.load(str(directory), batch_size=1))
    everything = [i for part in ids for i in part]
    # 20 files and sub's 2 (ids 0 and 1 again, but different files), each read once.
    assert sorted(everything) == sorted([*range(20), 0, 1])
    assert len(everything) == 22


# ----------------------------------------------------------------------------- labels

@pytest.mark.parametrize("label, problem", [
    (None, r"b\.tfrecord, record 2 has no class label: .* got none; the labels were asked"),
    (2 ** 40, r"b\.tfrecord, record 2 has the class label 1099511627776; expected a label in "
              r"0\.\.99999"),
    (-1, r"b\.tfrecord, record 2 has the class label -1"),
])
def test_labels_are_checked_when_asked_for(tmp_path, label, problem):
    _good_records(tmp_path / "a.tfrecord", 0)
    _tfrecord(tmp_path / "b.tfrecord", [_example(_png(i), i % 2) for i in range(5, 7)]
              + [_example(_png(7), label)])
    with pytest.raises(ValueError, match=problem):
        datasets.load(str(tmp_path), batch_size=2, labels=True)
    # Even when skipping unreadable files: the labels are wrong, not the file.
    with pytest.raises(ValueError, match=problem):
        datasets.load(str(tmp_path), batch_size=2, labels=True, skip_bad_files=True)
    # Without labels, they are not read.
    splits = datasets.load(str(tmp_path), batch_size=1)
    assert splits.num_classes == 1 and sum(map(len, _split_ids(splits))) == 8



# ----------------------------------------------------------------------------- the training command

def _snapshot(directory) -> dict[str, bytes]:
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                files[os.path.relpath(f.name, directory)] = f.read()
    return files


def test_a_bad_file_stops_the_command_with_one_line_and_writes_nothing(tmp_path):
    directory = _image_directory(tmp_path / "images", 20, {17: _png(17)[:-8]})
    # A run directory as a killed run leaves it: the data are read before it is.
    output_dir = tmp_path / "run"
    (output_dir / "backup").mkdir(parents=True)
    (output_dir / "backup" / "state.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "tfp_flows.train", "--flow=glow", f"--dataset={directory}",
         f"--output_dir={output_dir}"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: dataset directory '{directory}' has 1 file that cannot be "
                           f"read") and "017.png: truncated PNG" in last
    assert _snapshot(output_dir) == {os.path.join("backup", "state.json"): b"{}"}


def test_the_command_skips_bad_files_when_told_and_names_them_at_the_end(tmp_path, capsys,
                                                                        monkeypatch):
    from tfp_flows import train
    from tfp_flows.training import loop

    directory = _image_directory(tmp_path / "images", 20, {17: b""}, shape=(4, 4, 3))
    # What happens between loading the data and the end of the run is not the point here.
    monkeypatch.setattr(loop, "_train", lambda config, strategy, chief, splits, *rest: {
        "num_test_examples": sum(len(batch) for batch in splits.test)})
    with pytest.warns(UserWarning, match="left out 1 file"):
        metrics = train.run({"flow": "glow", "dataset": directory, "num_scales": 1, "depth": 1,
                             "hidden": 4, "batch_size": 4, "output_dir": str(tmp_path / "run"),
                             "skip_bad_files": True})
    # 017.png was a training file; the 4 test files are all there.
    assert metrics == {"num_test_examples": 4}
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (f"skipped 1 unreadable file(s) of {directory}: "
                    f"{directory}/017.png: expected a PNG or JPEG image, got an empty file")
