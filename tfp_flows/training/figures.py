"""The figures of a run: training_curve.png, samples.png (images), density.png (2-D data)."""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

from tfp_flows.flow_model import FlowModel
from tfp_flows.training.config import MONITOR

__all__ = ["density_figure", "sample_grid", "training_curve", "write_figures"]

# Sample grid: samples per row, and rows of an unconditional model (a conditional one has a
# row per class).
_SAMPLES_PER_ROW = 4
_UNCONDITIONAL_ROWS = 2
_DENSITY_GRID = 200
_DENSITY_SAMPLES = 4000


def write_figures(output_dir: str, history: list[dict], best_epoch: int | None,
                  model: FlowModel, splits, image_shape: tuple[int, ...] | None,
                  temperatures: tuple[float, ...], seed: int) -> list[str]:
    """Writes the run's figures into `output_dir`: the training curve, and the samples of
    image data or the density of 2-D data. Returns the names of the files written."""
    written = ["training_curve.png"]
    training_curve(history, best_epoch, os.path.join(output_dir, "training_curve.png"))
    if image_shape is not None:
        sample_grid(model, image_shape, splits.num_levels, temperatures, seed,
                    os.path.join(output_dir, "samples.png"))
        written.append("samples.png")
    elif splits.event_shape == (2,):
        test = list(splits.test.as_numpy_iterator())
        if model.flow.num_classes is not None:
            data, labels = (np.concatenate(column)[:_DENSITY_SAMPLES]
                            for column in zip(*test, strict=True))
        else:
            data, labels = np.concatenate(test)[:_DENSITY_SAMPLES], None
        density_figure(model, data, labels, seed, os.path.join(output_dir, "density.png"))
        written.append("density.png")
    return written


def training_curve(history: list[dict], best_epoch: int | None, path: str) -> None:
    """Train and validation bits/dim per epoch, the best epoch marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r.get("bits_per_dim") for r in history], "o-", label="train")
    ax.plot(epochs, [r.get(MONITOR) for r in history], "o-", label="validation")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="gray", linestyle=":", label=f"best (epoch {best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits / dim")
    ax.legend()
    fig.savefig(path, dpi=100)


def sample_grid(model: FlowModel, image_shape: tuple[int, ...], num_levels: int,
                temperatures: tuple[float, ...], seed: int, path: str) -> None:
    """A panel of samples per temperature; a conditional model's panels have a row per class."""
    from matplotlib.figure import Figure

    height, width, channels = image_shape
    num_classes = model.flow.num_classes
    rows = num_classes or _UNCONDITIONAL_ROWS
    labels = None if num_classes is None else np.repeat(np.arange(num_classes), _SAMPLES_PER_ROW)
    fig = Figure(figsize=(len(temperatures) * (_SAMPLES_PER_ROW * 0.5 + 0.3) + 0.6,
                          rows * 0.5 + 0.8), layout="constrained")
    for column, temperature in enumerate(temperatures):
        x = model.sample(rows * _SAMPLES_PER_ROW, context=labels, temperature=temperature,
                         seed=seed)
        # Samples are pixel values in [0, num_levels); out-of-range values are clipped.
        x = np.clip(np.reshape(x.numpy(), (rows, _SAMPLES_PER_ROW, *image_shape)) / num_levels,
                    0.0, 1.0)
        # Tiled with a white line between images: (rows * (H + 1) - 1, columns * (W + 1) - 1).
        x = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1), (0, 0)), constant_values=1.0)
        tiled = x.transpose(0, 2, 1, 3, 4).reshape(rows * (height + 1),
                                                   _SAMPLES_PER_ROW * (width + 1),
                                                   channels)[:-1, :-1]
        ax = fig.add_subplot(1, len(temperatures), column + 1)
        ax.imshow(tiled[..., 0] if channels == 1 else tiled, cmap="gray", vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"T = {temperature:g}")
        if num_classes is not None and column == 0:
            ax.set_yticks([(row + 0.5) * (height + 1) for row in range(rows)],
                          [f"class {row}" for row in range(rows)])
    fig.suptitle(f"samples at temperature T ({height}x{width})")
    fig.savefig(path, dpi=100)


def density_figure(model: FlowModel, data: np.ndarray, labels: np.ndarray | None, seed: int,
                   path: str) -> None:
    """Data, samples and the learned density; a conditional model's is the mixture over the
    labels, p(x) = sum_c p(c) p(x | c), with p(c) the labels' frequencies."""
    from matplotlib.figure import Figure

    low, high = data.min(axis=0), data.max(axis=0)
    margin = 0.1 * (high - low)
    low, high = low - margin, high + margin
    # One sample per data point, of the point's class for a conditional model.
    samples = model.sample(len(data), context=labels, seed=seed).numpy()
    gx, gy = np.meshgrid(np.linspace(low[0], high[0], _DENSITY_GRID),
                         np.linspace(low[1], high[1], _DENSITY_GRID))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    if labels is None:
        log_density = model.log_prob(grid)
    else:
        frequencies = np.bincount(labels) / len(labels)
        log_density = tf.reduce_logsumexp(
            [math.log(frequencies[c]) + model.log_prob(grid, context=np.full(len(grid), c))
             for c in np.flatnonzero(frequencies)], axis=0)
    density = np.exp(log_density.numpy()).reshape(gx.shape)
    extent = (low[0], high[0], low[1], high[1])
    bins = [np.linspace(low[0], high[0], 80), np.linspace(low[1], high[1], 80)]
    fig = Figure(figsize=(12, 4), layout="constrained")
    for i, (title, points) in enumerate([("data", data), ("samples", samples)]):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.hist2d(points[:, 0], points[:, 1], bins=bins, cmap="viridis")
        ax.set_title(f"{title} ({len(points)} points)")
    ax = fig.add_subplot(1, 3, 3)
    ax.imshow(density, origin="lower", extent=extent, aspect="auto", cmap="viridis")
    ax.set_title("learned density p(x)" if labels is None
                 else r"learned density $\sum_c\, p(c)\, p(x \mid c)$")
    for ax in fig.axes:
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
    fig.savefig(path, dpi=100)
