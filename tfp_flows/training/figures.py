"""The figures of a run: training_curve.png, samples.png (images), density.png (2-D data)."""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

from tfp_flows.flow_model import FlowModel
from tfp_flows.training.config import MONITOR

__all__ = ["density_figure", "epoch_ticks", "panel_figure", "sample_grid", "tile",
           "training_curve", "write_figures"]

# Sample grid: a panel of real test images, then a panel of samples per temperature, each
# _SAMPLES_PER_ROW images wide; an unconditional model's panels are square, a conditional one's
# have a row per class.
_SAMPLES_PER_ROW = 8
_DENSITY_GRID = 200
_DENSITY_SAMPLES = 4000
# Image panels are drawn at an integer magnification of at least this many screen pixels per
# image, so that every image pixel and every separating line is the same number of pixels wide.
_MIN_IMAGE_PIXELS = 48
_MAX_EPOCH_TICKS = 10


def write_figures(output_dir: str, history: list[dict], best_epoch: int | None,
                  model: FlowModel, splits, image_shape: tuple[int, ...] | None,
                  temperatures: tuple[float, ...], seed: int) -> list[str]:
    """Writes the run's figures into `output_dir`: the training curve, and the test images
    beside the samples of image data, or the density of 2-D data. Returns the names of the
    files written."""
    written = ["training_curve.png"]
    training_curve(history, best_epoch, os.path.join(output_dir, "training_curve.png"))
    if image_shape is not None:
        sample_grid(model, image_shape, splits.num_levels, temperatures, seed,
                    os.path.join(output_dir, "samples.png"), test=splits.test)
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


def epoch_ticks(first: int, last: int, max_ticks: int = _MAX_EPOCH_TICKS) -> list[int]:
    """Integer epoch ticks from `first` to `last`: every epoch while they fit in `max_ticks`,
    else the multiples of the smallest step among 1, 2, 5, 10, 20, 50, ... that fits."""
    if last < first:
        raise ValueError(f"epoch_ticks: the last epoch ({last}) comes before the first "
                         f"({first})")
    step = 1
    while True:
        for multiple in (1, 2, 5):
            if (last // (step * multiple)) - ((first - 1) // (step * multiple)) <= max_ticks:
                step *= multiple
                if step == 1:
                    return list(range(first, last + 1))
                return list(range(-(-first // step) * step, last + 1, step))
        step *= 10


def training_curve(history: list[dict], best_epoch: int | None, path: str) -> None:
    """Train and validation bits/dim per epoch, the best epoch marked; integer epoch ticks,
    and a margin of half an epoch either side (one epoch is one point in the middle)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r.get("bits_per_dim") for r in history], "o-", label="train")
    ax.plot(epochs, [r.get(MONITOR) for r in history], "o-", label="validation")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="gray", linestyle=":", label=f"best (epoch {best_epoch})")
    ax.set_xticks(epoch_ticks(min(epochs), max(epochs)))
    ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits / dim")
    ax.legend()
    fig.savefig(path, dpi=100)


def tile(images: np.ndarray, columns: int, pad: int = 1) -> np.ndarray:
    """A batch `(N, H, W[, C])` of images as one mosaic of `columns` columns, `pad` pixels of
    white (255 for uint8 images, else 1.0) around and between them; the missing cells of the
    last row are white too. Channels of 1 are dropped (a grayscale mosaic)."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4):
        raise ValueError(f"tile: expected images (N, H, W) or (N, H, W, C), got shape "
                         f"{images.shape}")
    n, height, width = images.shape[:3]
    rows = max(1, math.ceil(n / columns))
    white = 255 if images.dtype == np.uint8 else 1.0
    mosaic = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad,
                      *images.shape[3:]), white, images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        mosaic[top:top + height, left:left + width] = image
    return mosaic


def panel_figure(panels: list[tuple[str, np.ndarray]], columns: int, magnification: int,
                 dpi: int = 100, title: str | None = None, row_labels=None):
    """A figure of mosaics (`tile`), each under its title, `columns` to a row, every mosaic
    pixel drawn as exactly `magnification` x `magnification` screen pixels (so the lines
    between the images are all equally wide). `row_labels` (a list of (y, text) in mosaic
    pixels) label the rows of the first panel of each figure row. Returns the Figure."""
    from matplotlib.figure import Figure

    height = max(m.shape[0] for _, m in panels) * magnification
    width = max(m.shape[1] for _, m in panels) * magnification
    rows = math.ceil(len(panels) / columns)
    # Margins in pixels: a title line above each panel, row labels left, a figure title on top.
    top, gap, left = (28 if title else 0), 24, (64 if row_labels else 8)
    fig_width = left + columns * (width + 8)
    fig_height = top + rows * (height + gap) + 8
    fig = Figure(figsize=(fig_width / dpi, fig_height / dpi), dpi=dpi)
    if title:
        fig.suptitle(title, y=1 - 6 / fig_height, va="top", fontsize=10)
    for i, (name, mosaic) in enumerate(panels):
        r, c = divmod(i, columns)
        # Pixel coordinates from the bottom left; a panel hangs from the top of its cell.
        x0 = left + c * (width + 8)
        y1 = fig_height - top - r * (height + gap) - gap
        w, h = mosaic.shape[1] * magnification, mosaic.shape[0] * magnification
        ax = fig.add_axes([x0 / fig_width, (y1 - h) / fig_height, w / fig_width,
                           h / fig_height])
        ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255 if mosaic.dtype == np.uint8 else 1.0,
                  interpolation="nearest", aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(name, fontsize=9, pad=4)
        if row_labels and c == 0:
            ax.set_yticks([y for y, _ in row_labels], [text for _, text in row_labels],
                          fontsize=7)
            ax.tick_params(length=0)
    return fig


def _test_images(test: tf.data.Dataset, image_shape: tuple[int, ...], num_classes: int | None,
                 per_class: int, count: int) -> np.ndarray:
    """The first `count` test images, or for a conditional model the first `per_class` of each
    class in label order (NaN where a class has fewer), as `(N, *image_shape)`."""
    if num_classes is None:
        images = []
        for batch in test.as_numpy_iterator():
            images.append(np.reshape(batch[0] if isinstance(batch, tuple) else batch,
                                     (-1, *image_shape)))
            if sum(map(len, images)) >= count:
                break
        return np.concatenate(images)[:count]
    chosen = np.full((num_classes, per_class, *image_shape), np.nan, np.float32)
    found = np.zeros(num_classes, int)
    for x, labels in test.as_numpy_iterator():
        for image, label in zip(np.reshape(x, (-1, *image_shape)), labels, strict=True):
            if found[label] < per_class:
                chosen[label, found[label]] = image
                found[label] += 1
        if found.min() == per_class:
            break
    return chosen.reshape(-1, *image_shape)


def sample_grid(model: FlowModel, image_shape: tuple[int, ...], num_levels: int,
                temperatures: tuple[float, ...], seed: int, path: str,
                test: tf.data.Dataset | None = None) -> None:
    """Real test images (when `test` is given) beside a panel of samples per temperature.

    An unconditional model's panels are 8 x 8 images; a conditional one's have a row per class
    (8 test images of that class, 8 samples given that class). Panels are laid out two per row
    when there are four or more, at an integer magnification (`panel_figure`).
    """
    height, width, channels = image_shape
    num_classes = model.flow.num_classes
    rows = num_classes or _SAMPLES_PER_ROW
    count = rows * _SAMPLES_PER_ROW
    labels = None if num_classes is None else np.repeat(np.arange(num_classes), _SAMPLES_PER_ROW)

    def pixels(x):
        # Pixel values in [0, num_levels) shown in [0, 1]; out-of-range values are clipped and
        # a missing test image (NaN) is white.
        x = np.nan_to_num(np.reshape(x, (-1, *image_shape)) / num_levels, nan=1.0)
        return tile(np.clip(x, 0.0, 1.0), _SAMPLES_PER_ROW)

    panels = []
    if test is not None:
        panels.append(("test images", pixels(_test_images(test, image_shape, num_classes,
                                                          _SAMPLES_PER_ROW, count))))
    for temperature in temperatures:
        x = model.sample(count, context=labels, temperature=temperature, seed=seed)
        panels.append((f"samples, T = {temperature:g}", pixels(x.numpy())))
    columns = 2 if len(panels) >= 4 else len(panels)
    row_labels = None if num_classes is None else [
        ((row + 0.5) * (height + 1), f"class {row}") for row in range(num_classes)]
    magnification = max(1, math.ceil(_MIN_IMAGE_PIXELS / max(height, width)))
    fig = panel_figure(panels, columns, magnification,
                       title=f"test images and samples at temperature T "
                             f"({height}x{width}x{channels})",
                       row_labels=row_labels)
    fig.savefig(path)


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
    fig = Figure(figsize=(14, 4), layout="constrained")
    axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    for ax, (title, points) in zip(axes, [("data", data), ("samples", samples)], strict=False):
        *_, counts = ax.hist2d(points[:, 0], points[:, 1], bins=bins, cmap="viridis")
        fig.colorbar(counts, ax=ax, label="points per bin")
        ax.set_title(f"{title} ({len(points)} points)")
    image = axes[2].imshow(density, origin="lower", extent=extent, aspect="auto",
                           cmap="viridis")
    fig.colorbar(image, ax=axes[2], label="density")
    axes[2].set_title("learned density p(x)" if labels is None
                      else r"learned density $\sum_c\, p(c)\, p(x \mid c)$")
    for ax in axes:
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    fig.savefig(path, dpi=100)
