"""A synthetic TFDS image dataset, built offline, for the streaming tests and benchmark.

`prepare` writes a prepared TFDS dataset into a data directory with a dataset builder, as
`download_and_prepare` does for a real one, without any download. The builder is not
registered by name: `tfds.builder(name, data_dir=...)` finds it from the prepared files, as
it does a dataset prepared on another machine.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds


def image(index: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """The uint8 image of example `index`: random, with its first pixel's channels spelling
    the index (red * 256 + green) so that tests can tell examples apart."""
    pixels = np.random.default_rng([seed, index]).integers(0, 256, shape, dtype=np.uint8)
    pixels[0, 0, 0], pixels[0, 0, 1] = index // 256, index % 256
    return pixels


def label(index: int, num_classes: int) -> int:
    return index % num_classes


def prepare(data_dir: str, name: str = "synthetic_images", *, num_train: int = 40,
            num_test: int = 10, shape: tuple[int, int, int] = (16, 16, 3),
            num_classes: int = 4, seed: int = 0) -> None:
    """Prepares `name` in `data_dir`: `train` and `test` splits of `image`/`label` examples
    (test examples are numbered after the train ones)."""

    class SyntheticImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=shape),
                "label": tfds.features.ClassLabel(num_classes=num_classes)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, num_train),
                    "test": self._generate_examples(num_train, num_train + num_test)}

        def _generate_examples(self, start, stop):
            for index in range(start, stop):
                yield index, {"image": image(index, shape, seed),
                              "label": label(index, num_classes)}

    SyntheticImages.name = name
    SyntheticImages(data_dir=data_dir).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
