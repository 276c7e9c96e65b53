"""Glow on Fashion-MNIST 28x28: test bits/dim, samples at three temperatures, interpolations.

    python experiments/glow_images.py           # about 7 minutes on 2 CPU cores
    python experiments/glow_images.py --quick   # a smoke test, about a minute
    python experiments/glow_images.py --train_examples 60000 --depth 16 --hidden 256 --epochs 50

Model: Glow (ActNorm with data-dependent init, LU-parametrised invertible 1x1 convolution,
affine coupling with sigmoid scale, learned split prior), multi-scale with 2 levels on 28x28x1:
squeeze to 14x14x4, `depth` steps, factor out half, squeeze to 7x7x8, `depth` steps. Glow's
"center" preprocessing x / 256 - 1/2 is a bijector in the chain. Defaults are CPU-sized: depth
8 per level and 64 hidden channels (the paper: 3 levels of 32 steps with 512 channels).

Data: real Fashion-MNIST from local IDX files (`apt-get install dataset-fashion-mnist` on
Debian/Ubuntu, or --data_dir); the first 10,000 training images (10% for validation and early
stopping), tested on all 10,000 official test images.

What it shows: test bits/dim; 8x8 sample grids at temperatures 0.5, 0.7 and 1.0 (z ~ N(0, T^2),
the same z for the three grids; lower T trades diversity for cleaner samples, as in Glow's
figures); latent interpolation between pairs of test images: z = encode(x), linear
interpolation in z, decode. Also the round-trip error |decode(encode(x)) - x| as a check of
invertibility, and the share of samples that overflow float32. Sampling divides by each
coupling's scale and multiplies by each split prior's sigma, and a small model sends a sizeable
share of N(0, 1) draws to latents it has not learned to map (likelihood hardly notices: losing
10% of the mass costs 0.0002 bits/dim); there the networks' outputs grow with their inputs,
and before the library bounded both factors (scale >= 1e-3, log sigma <= 3) 35% of the samples
at T = 1.0 overflowed.
Saves the model to experiments/results/glow_fashion.keras (git-ignored) for
attribute_manipulation.py.

Published, for context (large models, GPUs, days): Glow 1.05 bits/dim on MNIST (as tabulated
by Grathwohl et al. 2019, FFJORD, table 2) and 3.35 on CIFAR-10 (Kingma and Dhariwal 2018,
table 2). No Glow number on Fashion-MNIST is published in the Glow paper.
Writes experiments/results/glow_images.json, glow_samples.png and glow_interpolation.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common
import keras
import matplotlib.pyplot as plt
import numpy as np

import tfp_flows
from tfp_flows.training import figures

NUM_LEVELS = 256
EVENT_SHAPE = (28, 28, 1)
TEMPERATURES = (0.5, 0.7, 1.0)
SAMPLE_MAGNIFICATION = 3
# Pairs of classes whose first test images are interpolated (indices into FASHION_CLASSES).
INTERPOLATION_PAIRS = ((7, 9), (0, 3), (1, 3), (2, 8))
INTERPOLATION_STEPS = 9
PUBLISHED = {"glow_mnist_bits_per_dim": {"value": 1.05, "source": "Grathwohl et al. 2019, "
                                                                  "FFJORD, table 2"},
             "glow_cifar10_bits_per_dim": {"value": 3.35, "source": "Kingma, Dhariwal 2018, "
                                                                    "table 2"},
             "fashion_mnist": "not reported in the Glow paper"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The data, model and training flags shared with attribute_manipulation.py."""
    parser.add_argument("--quick", action="store_true",
                        help="tiny run, a smoke test (writes to $TMPDIR/tfp_flows_quick)")
    parser.add_argument("--data_dir", default=common.FASHION_MNIST_DIR)
    parser.add_argument("--train_examples", type=int, default=10_000)
    parser.add_argument("--test_examples", type=int, default=10_000)
    parser.add_argument("--depth", type=int, default=8, help="steps of flow per level")
    parser.add_argument("--hidden", type=int, default=64, help="channels of the conditioners")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)


def apply_quick(args: argparse.Namespace) -> None:
    if args.quick:
        args.train_examples, args.test_examples, args.epochs = 1000, 500, 1
        args.depth, args.hidden = 2, 16


def model_path(quick: bool) -> Path:
    """Where the trained Glow is saved (git-ignored: *.keras)."""
    return common.output_dir(quick) / "glow_fashion.keras"


def train_glow(args: argparse.Namespace) -> tuple[keras.Model, dict]:
    """Trains the Glow of this experiment, saves it to `model_path`, returns it and its record."""
    keras.utils.set_random_seed(args.seed)
    splits = common.fashion_mnist_splits(args.data_dir, args.train_examples, args.test_examples,
                                         args.batch_size, args.seed)
    model = tfp_flows.glow(EVENT_SHAPE, num_scales=2, depth=args.depth, hidden=args.hidden,
                           num_levels=NUM_LEVELS)
    fit = common.train(model, splits, epochs=args.epochs, learning_rate=args.learning_rate,
                       patience=args.patience)
    test = common.evaluate(model, splits.test)
    print(f"glow: test {test['bits_per_dim']} bits/dim")
    model.save(model_path(args.quick))
    description = (f"Glow, 2 levels x {args.depth} steps (ActNorm, LU 1x1 conv, affine "
                   f"coupling), {args.hidden} hidden channels, split prior")
    return model, {"description": description, "parameters": model.count_params(),
                   "test": test, **fit}


def sample_figure(model: keras.Model, seed: int, quick: bool) -> tuple[str, dict]:
    """The 8 x 8 sample grids, each 28x28 image magnified 3x (every pixel and every line
    between the images equally wide), and per temperature the share of 1000 samples that
    overflowed."""
    panels, shares = [], {}
    for temperature in TEMPERATURES:
        samples = model.sample(1000, temperature=temperature, seed=seed).numpy()
        shares[str(temperature)] = common.overflowed(samples) / len(samples)
        title = f"T = {temperature}"
        if shares[str(temperature)]:
            title += f" ({common.overflowed(samples[:64])} of 64 overflowed, black)"
        panels.append((title, common.tile(common.to_pixels(samples[:64]), 8)))
    fig = figures.panel_figure(panels, columns=len(panels), magnification=SAMPLE_MAGNIFICATION)
    path = common.output_dir(quick) / "glow_samples.png"
    fig.savefig(path)  # at the figure's own dpi: any other would resample the grid unevenly
    return common.shown_path(path), shares


def interpolation_figure(model: keras.Model, x_test: np.ndarray, y_test: np.ndarray,
                         quick: bool) -> str:
    # Midpoint dequantization makes the endpoints deterministic.
    x = x_test.astype(np.float32) + 0.5
    first = {label: int(np.argmax(y_test == label)) for label in np.unique(y_test)}
    pairs = [(first[a], first[b]) for a, b in INTERPOLATION_PAIRS if a in first and b in first]
    weights = np.linspace(0.0, 1.0, INTERPOLATION_STEPS, dtype=np.float32)[:, None, None, None]
    rows = []
    for a, b in pairs:
        z = model.encode(x[[a, b]]).numpy()
        frames = model.decode((1.0 - weights) * z[0] + weights * z[1]).numpy()
        rows.append(np.concatenate([x[[a]], frames, x[[b]]]))
    mosaic = common.tile(common.to_pixels(np.concatenate(rows)), INTERPOLATION_STEPS + 2)
    fig, ax = plt.subplots(figsize=(0.6 * (INTERPOLATION_STEPS + 2), 0.6 * len(pairs) + 0.5))
    common.show(ax, mosaic, "test x_a | decode((1 - t) z_a + t z_b), t = 0 ... 1 | test x_b")
    return common.save_figure(fig, "glow_interpolation.png", quick)


def round_trip_error(model: keras.Model, x_test: np.ndarray) -> float:
    x = x_test[:64].astype(np.float32) + 0.5
    # Through numpy, so that TFP's bijector cache cannot hand back the input unchanged.
    z = model.encode(x).numpy()
    return float(np.max(np.abs(model.decode(z).numpy() - x)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args()
    apply_quick(args)
    start = time.perf_counter()
    record = {"experiment": "glow_images", "command": "python experiments/glow_images.py"
              + (" --quick" if args.quick else ""), "machine": common.machine(),
              "settings": vars(args), "units": "test bits/dim in 8-bit pixel space",
              "published_for_context": PUBLISHED}
    model, record["glow"] = train_glow(args)
    arrays = common.fashion_mnist_arrays(args.data_dir)
    record["round_trip_max_abs_error_pixels"] = round_trip_error(model, arrays["x_test"])
    samples_png, record["overflowed_sample_share_by_temperature"] = sample_figure(
        model, args.seed, args.quick)
    record["figures"] = [samples_png, interpolation_figure(model, arrays["x_test"],
                                                           arrays["y_test"], args.quick)]
    record["model_file"] = common.shown_path(model_path(args.quick)) + " (git-ignored)"
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    common.write_json("glow_images.json", record, args.quick)


if __name__ == "__main__":
    main()
