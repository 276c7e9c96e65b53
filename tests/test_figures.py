"""The training command's figures (tfp_flows.training.figures), on untrained tiny models."""

import numpy as np
import pytest
import tensorflow as tf
from matplotlib.image import imread

import tfp_flows
from tfp_flows.training import figures


@pytest.mark.parametrize("first, last, expected", [
    (1, 1, [1]),
    (1, 3, [1, 2, 3]),
    (1, 10, list(range(1, 11))),
    (1, 11, [2, 4, 6, 8, 10]),
    (1, 23, [5, 10, 15, 20]),
    (4, 9, [4, 5, 6, 7, 8, 9]),
    (1, 100, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
    (1, 101, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
    (1, 111, [20, 40, 60, 80, 100]),
    (7, 7, [7]),
])
def test_epoch_ticks_are_whole_epochs_and_at_most_ten(first, last, expected):
    assert figures.epoch_ticks(first, last) == expected


def test_epoch_ticks_refuse_a_backward_range():
    with pytest.raises(ValueError, match="comes before"):
        figures.epoch_ticks(3, 2)


def _history(epochs):
    return [{"epoch": e, "bits_per_dim": 3.0 - 0.1 * e, "val_bits_per_dim": 3.1 - 0.1 * e}
            for e in range(1, epochs + 1)]


@pytest.mark.parametrize("epochs", [1, 3, 25])
def test_training_curve_has_whole_epoch_ticks(tmp_path, monkeypatch, epochs):
    saved = {}
    monkeypatch.setattr("matplotlib.figure.Figure.savefig",
                        lambda fig, path, **kw: saved.update(fig=fig, path=path))
    figures.training_curve(_history(epochs), 1, str(tmp_path / "curve.png"))
    ax = saved["fig"].axes[0]
    ticks = ax.get_xticks()
    assert all(t == int(t) for t in ticks) and 1 <= len(ticks) <= 10
    low, high = ax.get_xlim()
    # One epoch is a point in the middle of a one-epoch-wide axis, not at 0.96-1.04.
    assert low == pytest.approx(0.5) and high == pytest.approx(epochs + 0.5)


def test_training_curve_writes_a_png(tmp_path):
    path = tmp_path / "curve.png"
    figures.training_curve(_history(1), 1, str(path))
    assert imread(path).shape[:2] == (400, 600)


def test_tile_puts_white_lines_around_and_between_images():
    images = np.zeros((3, 2, 2, 1), np.float32)
    mosaic = figures.tile(images, columns=2)
    assert mosaic.shape == (2 * 3 + 1, 2 * 3 + 1)
    assert mosaic[1:3, 1:3].max() == 0.0 and mosaic[1:3, 4:6].max() == 0.0
    # The separating lines and the missing fourth image are white.
    assert (mosaic[0] == 1).all() and (mosaic[:, 3] == 1).all() and (mosaic[4:6, 4:6] == 1).all()
    assert figures.tile(np.zeros((1, 2, 2), np.uint8), 1)[0, 0] == 255
    with pytest.raises(ValueError, match=r"expected images \(N, H, W\)"):
        figures.tile(np.zeros((4, 4)), 2)


def _runs(profile, value):
    """Lengths of the runs of `value` in a 1-D boolean profile."""
    runs, length = [], 0
    for item in [*profile, not value]:
        if item == value:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    return runs


def _digits_test(labels: bool) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 17, size=(40, 8, 8, 1)).astype(np.float32)
    y = np.arange(40) % 10
    return tf.data.Dataset.from_tensor_slices((x, y) if labels else x).batch(16)


def test_panel_figure_draws_every_line_equally_wide(tmp_path):
    # Two panels of black 8x8 images; without titles the only dark pixels are the images.
    mosaic = figures.tile(np.zeros((64, 8, 8), np.float32), 8)
    fig = figures.panel_figure([("", mosaic), ("", mosaic)], columns=2, magnification=5)
    fig.savefig(tmp_path / "panels.png")
    grid = imread(tmp_path / "panels.png")[..., :3].mean(axis=-1)
    rows, columns = np.nonzero(grid < 0.5)
    top, left = rows.min(), columns.min()
    # Across the first panel (its outer white line included): 9 lines, each 5 pixels wide,
    # and 8 images of 8 x 5 = 40 pixels between them.
    across = grid[top + 2, left - 5:left - 5 + (8 * 9 + 1) * 5] > 0.5
    assert _runs(across, True) == [5] * 9 and _runs(across, False) == [40] * 8
    down = grid[top - 5:top - 5 + (8 * 9 + 1) * 5, left + 2] > 0.5
    assert _runs(down, True) == [5] * 9 and _runs(down, False) == [40] * 8


def test_sample_grid_shows_test_images_beside_8x8_samples(tmp_path, monkeypatch):
    model = tfp_flows.glow((8, 8, 1), num_scales=1, depth=1, hidden=8, num_levels=17)
    saved = {}
    monkeypatch.setattr("matplotlib.figure.Figure.savefig",
                        lambda fig, path, **kw: saved.update(fig=fig))
    figures.sample_grid(model, (8, 8, 1), 17, (0.5, 0.7, 1.0), 0, str(tmp_path / "s.png"),
                        test=_digits_test(labels=False))
    axes = saved["fig"].axes
    assert [ax.get_title() for ax in axes] == [
        "test images", "samples, T = 0.5", "samples, T = 0.7", "samples, T = 1"]
    # 64 samples per temperature, 8 x 8; the 40 test images fill five rows of eight.
    test, samples = (ax.get_images()[0].get_array() for ax in axes[:2])
    assert samples.shape == (8 * 9 + 1, 8 * 9 + 1) and test.shape == (5 * 9 + 1, 8 * 9 + 1)
    first = next(iter(_digits_test(False).unbatch())).numpy()
    np.testing.assert_allclose(test[1:9, 1:9], first[..., 0] / 17, rtol=1e-6)


def test_conditional_sample_grid_has_a_row_per_class(tmp_path):
    model = tfp_flows.maf((64,), hidden=8, num_layers=1, num_classes=10)
    path = tmp_path / "samples.png"
    figures.sample_grid(model, (8, 8, 1), 17, (1.0,), 0, str(path), test=_digits_test(True))
    grid = imread(path)
    # Two panels side by side, each ten rows of eight 8x8 images.
    assert grid.shape[0] > grid.shape[1] / 2


def test_density_figure_has_axis_labels_and_colour_bars(tmp_path, monkeypatch):
    model = tfp_flows.realnvp((2,), hidden=8, num_couplings=2)
    data = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    saved = {}
    monkeypatch.setattr("matplotlib.figure.Figure.savefig",
                        lambda fig, path, **kw: saved.update(fig=fig))
    figures.density_figure(model, data, None, 0, str(tmp_path / "density.png"))
    fig = saved["fig"]
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(panels) == 3 and len(bars) == 3
    assert all(ax.get_xlabel() == "$x_1$" and ax.get_ylabel() == "$x_2$" for ax in panels)
    assert bars[-1].get_ylabel() == "density"
