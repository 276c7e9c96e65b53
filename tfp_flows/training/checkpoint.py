"""The resumable state of a run, committed atomically: a kill at any point leaves the last
commit whole, and a resumed run goes on from it as if it had never stopped."""

from __future__ import annotations

import glob
import os
import zipfile

import keras
import numpy as np

from tfp_flows.training.errors import ConfigError, TrainingError, reason
from tfp_flows.training.files import fsync, read_json_object, write_json_atomically
from tfp_flows.training.kill_points import KILL_AT, kill_point

__all__ = ["Checkpoint"]

# What reading a damaged weights or .keras file raises (h5py raises OSError).
_LOAD_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
# state.json entries added since the first release, with the values that older files imply.
_STATE_ADDED = {"epoch_metrics": None}


class Checkpoint(keras.callbacks.Callback):
    """The resumable state of a run: weights, optimizer, epoch history, best model, patience.

    This plays the part of `keras.callbacks.BackupAndRestore`, which does not survive a kill:
    it rewrites `latest.weights.h5` in place and its metadata as a second file, so a kill
    during a save leaves a corrupt or mismatched pair; after a restore it counts epochs from 0
    again, so a mid-epoch save in the first resumed epoch records epoch 0. Nor do Keras's
    ModelCheckpoint and EarlyStopping remember the best score and the patience used so far:
    the rules of `tfp_flows.training.callbacks` keep theirs in this checkpoint's `state`.

    A commit writes the weights (optimizer state and ActNorm's `data_initialized` flag
    included) to a file with a fresh name, then atomically replaces `state.json`, which names
    that file and holds the epoch history, the best epoch and, mid-epoch, the running means of
    the epoch's training metrics. A kill at any point leaves the previous commit whole.
    Commits happen every `every_steps` steps within an epoch and at each epoch end (after the
    other callbacks' epoch end: list this one last). A run resumed from a mid-epoch commit goes
    on from the committed step (`skipped` counts the steps before it, which the training loop
    does not train again) with the epoch's metrics restored, so it ends with the iterations,
    history and weights of a run that was never killed. Weights that are not finite are never
    committed: they raise `TrainingError`.

    Args:
        directory: Where the state lives (created on the first commit).
        best_model_path: The `.keras` file of the best model (see `BestModel`).
        every_steps: Commit every this many steps within an epoch as well; 0 only at epoch ends.
        steps_per_epoch: Steps in an epoch, whose last step the epoch end commits (None:
            unknown, so every `every_steps`-th step commits).
        write: False on the non-chief workers of a multi-worker run, which track the same
            state but leave the files to the chief.
    """

    def __init__(self, directory: str, best_model_path: str, every_steps: int = 0,
                 steps_per_epoch: int | None = None, write: bool = True):
        super().__init__()
        self.directory = directory
        self.best_model_path = best_model_path
        self.every_steps = every_steps
        self.steps_per_epoch = steps_per_epoch
        self.write = write
        self.state: dict = {**_STATE_ADDED, "commit": 0, "epoch": 0, "step": 0, "iterations": 0,
                            "weights": None, "history": [], "best_epoch": None,
                            "best_bits_per_dim": None, "stopped_early": False}
        self.epoch = 0
        self.step = 0
        # Steps of the current epoch trained before this `fit` began: a run resumed mid-epoch
        # skips them.
        self.skipped = 0

    @property
    def state_path(self) -> str:
        """The path of `state.json`, which names the committed checkpoint."""
        return os.path.join(self.directory, "state.json")

    def restore(self) -> bool:
        """Loads the last commit, if any, into the model (call inside the strategy scope).

        Returns:
            Whether a commit was found.

        Raises:
            ConfigError: When the commit or the best model it names is missing or damaged.
        """
        if not os.path.exists(self.state_path):
            return False
        advice = f"remove {self.directory} to start over, or restore it"
        state = {**_STATE_ADDED, **read_json_object(
            self.state_path, "checkpoint", advice,
            keys=[key for key in self.state if key not in _STATE_ADDED])}
        optimizer = self.model.optimizer
        if not optimizer.built:
            # The optimizer's slots must exist (in the strategy scope) for their values to load.
            optimizer.build(self.model.trainable_variables)
        if state["best_epoch"] is not None:
            # Read now, though only used after training, so a damaged best model stops the run
            # before it trains; the commit's weights replace these next.
            self.load_best()
        weights_path = os.path.join(self.directory, state["weights"])
        try:
            self.model.load_weights(weights_path)
        except _LOAD_ERRORS as error:
            raise ConfigError(f"checkpoint {weights_path} is unreadable ({reason(error)}); "
                              f"{advice}") from None
        self.state = state
        return True

    def load_best(self) -> None:
        """Loads the weights of the best model into the model.

        Raises:
            ConfigError: When the best model's file is missing or damaged.
        """
        try:
            self.model.load_weights(self.best_model_path)
        except _LOAD_ERRORS as error:
            raise ConfigError(f"the best model {self.best_model_path} is unreadable "
                              f"({reason(error)}); restore it, or remove {self.directory} to "
                              f"start over") from None

    def kept(self) -> str:
        """Says which saved state survives, for the message of a run that stops."""
        if not self.state["commit"]:
            return "No checkpoint had been saved yet."
        return (f"The last good checkpoint (after {self.state['epoch']} epoch(s) and "
                f"{self.state['step']} step(s)) stays in {self.directory}; rerun to resume.")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.step = epoch, self.skipped
        if self.skipped and self.state["epoch_metrics"] is not None:
            # Keras has just reset the metrics; their means go on from the steps trained before.
            for metric, values in zip(self.model.metrics, self.state["epoch_metrics"],
                                      strict=True):
                for variable, value in zip(metric.variables, values, strict=True):
                    variable.assign(value)

    def on_train_batch_end(self, batch, logs=None):
        self.step = self.skipped + batch + 1
        # The epoch's last step is committed by on_epoch_end, with the epoch's validation.
        if (self.every_steps and self.step % self.every_steps == 0
                and self.step != self.steps_per_epoch):
            self._commit()
        if KILL_AT in os.environ:
            kill_point(f"iteration:{int(self.model.optimizer.iterations.numpy())}")

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        self.state["history"] = [*self.state["history"][:epoch], record]
        kill_point(f"epoch_end:{epoch + 1}")
        self.epoch, self.step = epoch + 1, 0
        self._commit()

    def _commit(self) -> None:
        values = (v.numpy() for v in [*self.model.weights, *self.model.optimizer.variables])
        if not all(np.isfinite(a).all() for a in values if np.issubdtype(a.dtype, np.floating)):
            raise TrainingError(f"the weights became NaN or Inf at epoch {self.epoch + 1} step "
                                f"{self.step}; try a lower --learning_rate. They were not "
                                f"saved. {self.kept()}")
        commit = self.state["commit"] + 1
        # At an epoch end the metrics hold the validation's means, which nothing resumes.
        epoch_metrics = [[np.asarray(v.numpy()).tolist() for v in metric.variables]
                         for metric in self.model.metrics] if self.step else None
        state = {**self.state, "commit": commit, "epoch": self.epoch, "step": self.step,
                 "iterations": int(self.model.optimizer.iterations.numpy()),
                 "weights": f"weights-{commit:08d}.weights.h5", "epoch_metrics": epoch_metrics}
        if self.write:
            os.makedirs(self.directory, exist_ok=True)
            weights_path = os.path.join(self.directory, state["weights"])
            self.model.save_weights(weights_path, overwrite=True)
            fsync(weights_path)
            kill_point(f"commit:{commit}")
            write_json_atomically(self.state_path, state)
            # Files of older commits, and partial ones of commits that never completed.
            for path in glob.glob(os.path.join(self.directory, "weights-*.weights.h5")):
                if os.path.basename(path) != state["weights"]:
                    os.remove(path)
        self.state = state
