"""What the experiments share: Fashion-MNIST splits, training, evaluation, figures, records.

The scripts import this module as `common` (Python puts the script's folder on the path).
Full runs write to experiments/results/; `--quick` smoke tests write to a scratch folder
($TMPDIR/tfp_flows_quick) so that they never overwrite the committed results.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from tfp_flows import datasets
from tfp_flows import machine as tfp_flows_machine
from tfp_flows.training.figures import tile  # noqa: F401 (the experiments' mosaics)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle boot")
DPI = 80


# The record of the machine every experiment writes beside its numbers (tfp_flows.machine).
machine = tfp_flows_machine.describe


class TrainingBudget(keras.callbacks.Callback):
    """Stops `fit` at the first step that ends with the process's CPU time (`time.process_time`,
    every thread) `seconds` past this budget's creation, or after `max_steps` steps when given.

    `start` is the process time at creation, `steps` the steps done and `last_logs` the logs
    of the last one.
    """

    def __init__(self, seconds: float, max_steps: int | None = None):
        super().__init__()
        self.start, self.seconds, self.max_steps = time.process_time(), seconds, max_steps
        self.steps, self.last_logs = 0, None

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.last_logs = logs
        if self.max_steps is not None:
            self.model.stop_training = self.steps >= self.max_steps
        elif time.process_time() - self.start >= self.seconds:
            self.model.stop_training = True


def fashion_mnist_arrays(data_dir: str) -> dict[str, np.ndarray]:
    """The raw Fashion-MNIST arrays, or a one-line exit that says how to get them."""
    if not os.path.isdir(data_dir):
        raise SystemExit(f"Fashion-MNIST not found in {data_dir}: run `apt-get install "
                         f"dataset-fashion-mnist` (Debian/Ubuntu) or pass --data_dir with the "
                         f"four IDX files of https://github.com/zalandoresearch/fashion-mnist.")
    return datasets.load_arrays(data_dir)


def fashion_mnist_splits(data_dir: str, train_examples: int, test_examples: int,
                         batch_size: int, seed: int = 0, labels: bool = False) -> datasets.Splits:
    """Dequantized pipelines over the first `train_examples` training images (10% of them held
    out for validation) and the first `test_examples` images of the official test set; with
    `labels=True` they yield `(x, label)` batches."""
    arrays = fashion_mnist_arrays(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        # The library's .npz source gives exact subset sizes with its own dequantization.
        path = os.path.join(tmp, "fashion_mnist_subset.npz")
        np.savez(path, x_train=arrays["x_train"][:train_examples],
                 x_test=arrays["x_test"][:test_examples],
                 y_train=arrays["y_train"][:train_examples],
                 y_test=arrays["y_test"][:test_examples])
        return datasets.load(path, batch_size=batch_size, seed=seed, labels=labels)


def train(model: keras.Model, splits: datasets.Splits, *, epochs: int, learning_rate: float,
          patience: int, steps_per_epoch: int | None = None, reshape=None) -> dict:
    """Adam + early stopping on validation bits/dim (best weights restored); returns the record.

    `reshape` is an optional event shape the pipelines' batches are reshaped to (e.g. (784,)).
    """
    train_ds, validation_ds = splits.train, splits.validation
    if reshape is not None:
        train_ds, validation_ds = (ds.map(lambda x: tf.reshape(x, (-1, *reshape)))
                                   for ds in (train_ds, validation_ds))
    if steps_per_epoch is not None:
        train_ds = train_ds.repeat()
    model.compile(keras.optimizers.Adam(learning_rate))
    stop = keras.callbacks.EarlyStopping(monitor="val_bits_per_dim", mode="min",
                                         patience=patience, restore_best_weights=True)
    start = time.perf_counter()
    history = model.fit(train_ds, validation_data=validation_ds, epochs=epochs,
                        steps_per_epoch=steps_per_epoch, callbacks=[stop], verbose=2)
    seconds = time.perf_counter() - start
    val = history.history["val_bits_per_dim"]
    return {"epochs_run": len(val), "best_epoch": int(np.argmin(val)) + 1,
            "train_seconds": round(seconds, 1),
            "history": {k: [round(float(v), 4) for v in vs] for k, vs in history.history.items()}}


def evaluate(model: keras.Model, dataset: tf.data.Dataset, reshape=None) -> dict:
    """Exact mean test NLL over every example (no per-batch averaging) in nats and bits/dim."""
    if reshape is not None:
        dataset = dataset.map(lambda x: tf.reshape(x, (-1, *reshape)))
    start = time.perf_counter()
    log_prob = model.predict(dataset, verbose=0)
    nll = -float(np.mean(log_prob))
    return {"nll_nats": round(nll, 3),
            "bits_per_dim": round(float(model.bits_per_dim(-nll)), 4),
            "examples": len(log_prob), "eval_seconds": round(time.perf_counter() - start, 1)}


def to_pixels(x, num_levels: int = 256) -> np.ndarray:
    """Dequantized values in [0, num_levels) (or a model's samples) as displayable uint8.

    Samples that overflowed float32 show as black (NaN, -inf) or white (+inf); count them with
    `overflowed`.
    """
    x = np.nan_to_num(np.asarray(x, np.float32), nan=0.0, posinf=num_levels, neginf=0.0)
    x = np.floor(np.clip(x, 0.0, num_levels - 1e-3)) * (255.0 / (num_levels - 1))
    return x.astype(np.uint8)


def overflowed(samples) -> int:
    """How many samples hold a non-finite value (float32 overflow while sampling)."""
    samples = np.asarray(samples)
    return int((~np.isfinite(samples.reshape(len(samples), -1))).any(axis=1).sum())


def show(ax, mosaic: np.ndarray, title: str) -> None:
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def output_dir(quick: bool) -> Path:
    """experiments/results, or for --quick smoke tests a scratch folder, so that they never
    overwrite the committed results."""
    directory = Path(tempfile.gettempdir()) / "tfp_flows_quick" if quick else RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def shown_path(path: Path) -> str:
    """A path as recorded in the JSON: relative to the repository when inside it."""
    return str(path.relative_to(RESULTS_DIR.parent.parent)) if path.is_relative_to(
        RESULTS_DIR) else str(path)


def save_figure(fig, name: str, quick: bool) -> str:
    path = output_dir(quick) / name
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return shown_path(path)


def write_json(name: str, record: dict, quick: bool) -> str:
    path = output_dir(quick) / name
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return shown_path(path)
