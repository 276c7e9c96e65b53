"""NICE (6 additive couplings) and RealNVP (5 affine couplings; and multi-scale) on Fashion-MNIST.

    python experiments/fashion_mnist_nice_realnvp.py           # about 7 minutes on 2 CPU cores
    python experiments/fashion_mnist_nice_realnvp.py --quick   # a smoke test, about a minute
    python experiments/fashion_mnist_nice_realnvp.py --train_examples 60000 --epochs 100

Data: the real Fashion-MNIST (28x28 grayscale, 256 levels) from local IDX files; on Debian or
Ubuntu `apt-get install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist/
(or pass --data_dir). By default the first 10,000 training images are used (10% of them for
validation and early stopping) and the test number is on all 10,000 official test images.

Models, all with the logit preprocessing y = logit(0.05 + 0.9 x / 256) as a bijector (so its
log-det counts) and a standard normal base:
- `nice`: NICE, 6 additive couplings on the flattened 784-vector (halves alternate), each
  conditioner 3x512 ReLU, then the diagonal scaling. The paper's MNIST model had 4 couplings
  of 5x1000 ReLU and a logistic base on [0, 1] pixels without logit.
- `realnvp_vector`: RealNVP as the issue words it, 5 affine couplings on the flattened
  784-vector, conditioners 2x512 ReLU, tanh-bounded log-scale: NICE's architecture with the
  additive coupling replaced by the affine one, so the two rows compare the coupling alone.
- `realnvp`: the RealNVP paper's image architecture at a small size: multi-scale with 2 levels
  (3 checkerboard couplings, squeeze, 3 channel couplings, factor out half, then 4 checkerboard
  couplings on 14x14x2), convolutional conditioners of 32 channels.

Numbers: test bits/dim in 8-bit pixel space, bpd = NLL_pixels / (784 ln 2). Published, for
context (MNIST digits, not Fashion-MNIST, with far larger models trained for days on GPUs):
- NICE, MNIST: log-likelihood 1980.50 nats (Dinh et al. 2015, table 2). NICE reports the
  density of x' = (x + u) / 256 in [0, 1]^784 (uniform noise of one level, then rescaled), so
  in 8-bit space NLL = 784 ln 256 - 1980.50 = 2366.9 nats, i.e. 4.36 bits/dim.
- RealNVP 1.06 and Glow 1.05 bits/dim on MNIST (as tabulated by Grathwohl et al. 2019, FFJORD,
  table 2); RealNVP 3.49 and Glow 3.35 bits/dim on CIFAR-10 (Dinh et al. 2017; Kingma and
  Dhariwal 2018).
- Fashion-MNIST: none of these papers reports it, so no published flow number is cited; the
  JSON gives instead a baseline computed here, independent per-pixel histograms (a model with
  no dependencies between pixels), which any flow worth its name must beat.
Writes experiments/results/fashion_mnist_nice_realnvp.json and fashion_mnist_samples.png.
"""

from __future__ import annotations

import argparse
import math
import time

import common
import keras
import matplotlib.pyplot as plt
import numpy as np

import tfp_flows

NUM_LEVELS = 256
EVENT_SHAPE = (28, 28, 1)
PIXELS = 784
NICE_MNIST_LOG_LIKELIHOOD = 1980.50
PUBLISHED = {
    "nice_mnist": {
        "log_likelihood_nats_rescaled_0_1": NICE_MNIST_LOG_LIKELIHOOD,
        "bits_per_dim_8bit": round((PIXELS * math.log(256) - NICE_MNIST_LOG_LIKELIHOOD)
                                   / (PIXELS * math.log(2)), 2),
        "source": "Dinh, Krueger, Bengio 2015, NICE, table 2",
        "conversion": "NICE's density is of x' = (x + u) / 256 in [0, 1]^784; the density of "
                      "the pixel values x + u is 256^-784 times it, so NLL_8bit = 784 ln 256 - "
                      "1980.50 = 2366.9 nats, / (784 ln 2) = 4.36 bits/dim"},
    "realnvp_mnist_bits_per_dim": {"value": 1.06, "source": "Grathwohl et al. 2019, FFJORD, "
                                                            "table 2"},
    "glow_mnist_bits_per_dim": {"value": 1.05, "source": "Grathwohl et al. 2019, FFJORD, table 2"},
    "realnvp_cifar10_bits_per_dim": {"value": 3.49, "source": "Dinh et al. 2017, table 1"},
    "glow_cifar10_bits_per_dim": {"value": 3.35, "source": "Kingma, Dhariwal 2018, table 2"},
    "fashion_mnist": "no number cited: the NICE, RealNVP and Glow papers do not report it",
}
MODELS = ("nice", "realnvp_vector", "realnvp")


def build(name: str, args) -> tuple[keras.Model, tuple | None, str]:
    """The model, the event shape its batches are reshaped to (or None), and its description."""
    if name == "nice":
        return (tfp_flows.nice(EVENT_SHAPE, num_couplings=6, hidden=args.hidden, num_hidden=3,
                               num_levels=NUM_LEVELS), None,
                f"NICE, 6 additive couplings on the 784-vector, conditioners 3x{args.hidden} "
                f"ReLU, diagonal scaling, logit preprocessing")
    if name == "realnvp_vector":
        return (tfp_flows.realnvp((PIXELS,), num_couplings=5, hidden=args.hidden, num_hidden=2,
                                  num_levels=NUM_LEVELS), (PIXELS,),
                f"RealNVP, 5 affine couplings on the 784-vector, conditioners 2x{args.hidden} "
                f"ReLU, tanh log-scale, logit preprocessing")
    return (tfp_flows.realnvp(EVENT_SHAPE, num_scales=2, hidden=args.conv_hidden, num_hidden=2,
                              num_levels=NUM_LEVELS), None,
            f"RealNVP multi-scale, 2 levels (3 checkerboard + 3 channel couplings, split, "
            f"4 checkerboard), conv conditioners {args.conv_hidden} channels, logit "
            f"preprocessing")


def histogram_baseline(x_train: np.ndarray, x_test: np.ndarray) -> float:
    """Test bits/dim of independent per-pixel categorical distributions (add-one smoothing)."""
    train = x_train.reshape(len(x_train), -1)
    test = x_test.reshape(len(x_test), -1)
    counts = np.ones((train.shape[1], NUM_LEVELS))
    for pixel in range(train.shape[1]):
        counts[pixel] += np.bincount(train[:, pixel], minlength=NUM_LEVELS)
    log_p = np.log(counts / counts.sum(1, keepdims=True))
    nll_bits = -log_p[np.arange(test.shape[1]), test].sum(1) / math.log(2)
    return round(float(nll_bits.mean()) / test.shape[1], 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny run, a smoke test (writes to $TMPDIR/tfp_flows_quick)")
    parser.add_argument("--data_dir", default=common.FASHION_MNIST_DIR)
    parser.add_argument("--models", default=",".join(MODELS), help=f"subset of {MODELS}")
    parser.add_argument("--train_examples", type=int, default=10_000)
    parser.add_argument("--test_examples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=16,
                        help="epochs of the MLP flows (nice, realnvp_vector)")
    parser.add_argument("--multiscale_epochs", type=int, default=8,
                        help="epochs of the multi-scale realnvp (each epoch costs ~2.5x more)")
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=512, help="units of the MLP conditioners")
    parser.add_argument("--conv_hidden", type=int, default=32,
                        help="channels of the multi-scale RealNVP's conv conditioners")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.train_examples, args.test_examples = 1000, 500
        args.epochs = args.multiscale_epochs = 1
        args.hidden, args.conv_hidden = 64, 8
    names = [n for n in args.models.split(",") if n]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {MODELS}")

    start = time.perf_counter()
    record = {"experiment": "fashion_mnist_nice_realnvp",
              "command": "python experiments/fashion_mnist_nice_realnvp.py"
                         + (" --quick" if args.quick else ""),
              "machine": common.machine(), "settings": vars(args),
              "units": "test bits/dim in 8-bit pixel space (lower is better)",
              "published_for_context": PUBLISHED, "models": {}}
    arrays = common.fashion_mnist_arrays(args.data_dir)
    record["per_pixel_histogram_baseline_bits_per_dim"] = histogram_baseline(
        arrays["x_train"][:args.train_examples], arrays["x_test"][:args.test_examples])
    splits = common.fashion_mnist_splits(args.data_dir, args.train_examples, args.test_examples,
                                         args.batch_size, args.seed)
    temperatures = (1.0, 0.7)
    fig, axes = plt.subplots(len(temperatures), len(names) + 1,
                             figsize=(3.1 * (len(names) + 1), 3.4 * len(temperatures)),
                             squeeze=False)
    data = common.to_pixels(arrays["x_test"][:64].astype(np.float32))
    common.show(axes[0, 0], common.tile(data, 8), "test data")
    axes[1, 0].axis("off")
    for column, name in enumerate(names, start=1):
        print(f"--- {name}")
        keras.utils.set_random_seed(args.seed)
        model, reshape, description = build(name, args)
        epochs = args.multiscale_epochs if name == "realnvp" else args.epochs
        fit = common.train(model, splits, epochs=epochs, learning_rate=args.learning_rate,
                           patience=args.patience, reshape=reshape)
        test = common.evaluate(model, splits.test, reshape=reshape)
        print(f"{name}: test {test['bits_per_dim']} bits/dim")
        record["models"][name] = {"description": description, "parameters": model.count_params(),
                                  "test": test, **fit}
        for row, temperature in enumerate(temperatures):
            samples = model.sample(64, temperature=temperature, seed=args.seed).numpy()
            mosaic = common.tile(common.to_pixels(samples.reshape(-1, *EVENT_SHAPE)), 8)
            common.show(axes[row, column], mosaic,
                        f"{name}, T={temperature}\n{test['bits_per_dim']:.2f} bits/dim")
    record["figure"] = common.save_figure(fig, "fashion_mnist_samples.png", args.quick)
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    common.write_json("fashion_mnist_nice_realnvp.json", record, args.quick)


if __name__ == "__main__":
    main()
