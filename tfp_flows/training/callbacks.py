"""The rules a run trains by, as Keras callbacks: stop on a non-finite loss or validation
score, keep the best model, stop when patience runs out; and the throughput it measures.

The rules keep what they must remember (the best epoch and score, whether patience ran out)
in the `Checkpoint`'s state, which commits it with the weights, so a resumed run goes on with
them. List them before the `Checkpoint` in `fit`'s callbacks: NonFiniteCheck, BestModel,
Patience, then Checkpoint, whose epoch end commits what they decided.
"""

from __future__ import annotations

import math
import time

import keras

from tfp_flows.training.checkpoint import Checkpoint
from tfp_flows.training.config import MONITOR
from tfp_flows.training.errors import TrainingError
from tfp_flows.training.files import save_model_atomically

__all__ = ["BestModel", "NonFiniteCheck", "Patience", "Throughput"]


class NonFiniteCheck(keras.callbacks.Callback):
    """Raises `TrainingError` on a NaN or Inf training loss or validation bits/dim.

    The model's train_step stops on a non-finite loss, but XLA drops that assertion; a
    non-finite validation score means broken validation data or a broken model.

    Args:
        checkpoint: The run's checkpoint, whose position and last commit the message gives.
    """

    def __init__(self, checkpoint: Checkpoint):
        super().__init__()
        self.checkpoint = checkpoint

    def on_train_batch_end(self, batch, logs=None):
        if logs and not math.isfinite(float(logs.get("loss", 0.0))):
            checkpoint = self.checkpoint
            raise TrainingError(f"the loss became NaN or Inf at epoch {checkpoint.epoch + 1} "
                                f"step {checkpoint.skipped + batch + 1}; try a lower "
                                f"--learning_rate. {checkpoint.kept()}")

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(MONITOR)
        if value is None or not math.isfinite(float(value)):
            raise TrainingError(f"validation bits/dim is {value} after epoch {epoch + 1}; the "
                                f"validation data or the model is broken. "
                                f"{self.checkpoint.kept()}")


class BestModel(keras.callbacks.Callback):
    """Saves the model to the checkpoint's `best_model_path` (atomically) at each epoch end
    whose validation bits/dim is the best so far, and records that epoch in the checkpoint.

    Args:
        checkpoint: The run's checkpoint; only its writer (`checkpoint.write`) saves.
    """

    def __init__(self, checkpoint: Checkpoint):
        super().__init__()
        self.checkpoint = checkpoint

    def on_epoch_end(self, epoch, logs=None):
        value = float(logs[MONITOR])
        state = self.checkpoint.state
        if state["best_bits_per_dim"] is None or value < state["best_bits_per_dim"]:
            if self.checkpoint.write:
                save_model_atomically(self.model, self.checkpoint.best_model_path)
            state["best_epoch"], state["best_bits_per_dim"] = epoch + 1, value


class Patience(keras.callbacks.Callback):
    """Stops training after `patience` epochs without a better validation bits/dim (as
    recorded by `BestModel`, listed before this); 0 never stops early.

    Args:
        checkpoint: The run's checkpoint, whose state records that training stopped early.
        patience: Epochs without improvement before stopping.
    """

    def __init__(self, checkpoint: Checkpoint, patience: int):
        super().__init__()
        self.checkpoint = checkpoint
        self.patience = patience

    def on_epoch_end(self, epoch, logs=None):
        state = self.checkpoint.state
        if self.patience and epoch + 1 - state["best_epoch"] >= self.patience:
            state["stopped_early"] = True
            self.model.stop_training = True


class Throughput(keras.callbacks.Callback):
    """Training examples per second, timed per step from the second step (the first traces)."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.seconds = 0.0
        self.examples = 0
        self._steps = 0
        self._start = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        if self._steps > 1:
            self.seconds += time.perf_counter() - self._start
            self.examples += self.batch_size

    @property
    def examples_per_second(self) -> float | None:
        return self.examples / self.seconds if self.seconds > 0 else None
