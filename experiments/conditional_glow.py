"""Class-conditional Glow against the unconditional Glow of the same size on Fashion-MNIST.

    python experiments/conditional_glow.py           # about 20 minutes on 2 busy CPU cores
    python experiments/conditional_glow.py --quick   # a smoke test, about 2 minutes
    python experiments/conditional_glow.py --depth 8 --epochs 10 --marginal_examples 10000

Models: two Glows of the same size, multi-scale with 2 scales on the unpadded 28x28x1 images
(squeeze to 14x14x4, `depth` steps, factor out half, squeeze to 7x7x8, `depth` steps; 28 is
not divisible by 8, and 2 scales keep the layout of glow_images.py, so no padding pixels enter
the bits/dim). Defaults are sized for a shared 2-core CPU: 4 steps per scale, 64 hidden
channels, 4 epochs each (glow_images.py trains 8 steps per scale for 10 epochs). Each step:
ActNorm (data-dependent init), LU 1x1 convolution, affine coupling with sigmoid scale; learned
split prior; Glow's "center" preprocessing as a bijector.
- `unconditional`: p(x).
- `conditional`: p(x | class), `tfp_flows.glow(..., num_classes=10)`: the one-hot label reaches
  every coupling network and the split prior, and sets the top latent's per-channel mean and
  log-scale (Glow's class-conditional prior, Kingma and Dhariwal 2018, section 5).
Both are trained with Adam on the same data, for the same number of epochs with the same
early stopping on validation bits/dim (best weights restored), one after the other.

Data: real Fashion-MNIST from local IDX files (`apt-get install dataset-fashion-mnist`, or
--data_dir): the first 10,000 training images (a seeded random 10% of them held out for
validation), tested on all 10,000 official test images; pixels dequantized as x + u in
[0, 256). Both models see the same batches with the same noise; the unconditional one drops
the labels.

Numbers (test bits/dim in 8-bit pixel space):
- conditional: -log2 p(x | true class) / 784; unconditional: -log2 p(x) / 784.
- The label itself is worth little: -log p(x | c) = -log p(x) - log p(c | x) + log p(c), so for
  exact models the test means differ by the mutual information I(x; c) <= log2(10) bits per
  image = 0.0042 bits/dim. A larger gap measures how much easier the conditional model finds
  the data at this size and training budget, not information in the label.
- So the conditional model's own marginal log p(x) = logsumexp_c log p(x | c) - log 10 (the
  test classes are balanced) is reported too (on `--marginal_examples` test images, 10
  passes): it is the fair comparison with the unconditional model. The same 10 passes give
  the generative classifier argmax_c p(x | c) and its test accuracy.
- Per-class test bits/dim of both models.
Figure: one row per class, samples at temperatures 0.5 and 0.7 side by side (the same z for
both), beside test images of the class. Samples that overflow float32 are counted (out of
`--overflow_samples` per temperature and model) and shown black.
Writes experiments/results/conditional_glow.json and conditional_glow_samples.png.
"""

from __future__ import annotations

import argparse
import math
import time
import types

import common
import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import tfp_flows

NUM_LEVELS = 256
NUM_CLASSES = 10
EVENT_SHAPE = (28, 28, 1)
NUM_SCALES = 2
TEMPERATURES = (0.5, 0.7)
COLUMNS = 8  # samples per class and temperature in the figure


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny run, a smoke test (writes to $TMPDIR/tfp_flows_quick)")
    parser.add_argument("--data_dir", default=common.FASHION_MNIST_DIR)
    parser.add_argument("--train_examples", type=int, default=10_000)
    parser.add_argument("--test_examples", type=int, default=10_000)
    parser.add_argument("--marginal_examples", type=int, default=1000,
                        help="test images scored under all 10 classes (marginal, classifier)")
    parser.add_argument("--depth", type=int, default=4, help="steps of flow per scale")
    parser.add_argument("--hidden", type=int, default=64, help="channels of the conditioners")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--overflow_samples", type=int, default=500,
                        help="samples per temperature and model counted for overflow")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.train_examples, args.test_examples, args.marginal_examples = 1000, 500, 200
        args.epochs, args.depth, args.hidden, args.overflow_samples = 1, 2, 16, 100
    return args


def build(conditional: bool, args: argparse.Namespace) -> keras.Model:
    options = {"num_classes": NUM_CLASSES} if conditional else {}
    return tfp_flows.glow(EVENT_SHAPE, num_scales=NUM_SCALES, depth=args.depth,
                          hidden=args.hidden, num_levels=NUM_LEVELS, **options)


def drop_labels(ds: tf.data.Dataset) -> tf.data.Dataset:
    return ds.map(lambda x, y: x)


def bits_per_dim(log_prob: np.ndarray) -> float:
    return round(-float(np.mean(log_prob)) / (math.prod(EVENT_SHAPE) * math.log(2.0)), 4)


def per_class(log_prob: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {common.FASHION_CLASSES[c]: bits_per_dim(log_prob[labels == c])
            for c in range(NUM_CLASSES) if (labels == c).any()}


def marginal_and_classifier(model: keras.Model, test: tf.data.Dataset, labels: np.ndarray,
                            examples: int) -> dict:
    """log p(x) = logsumexp_c log p(x | c) - log 10 and argmax_c p(x | c) on `examples` images."""
    start = time.perf_counter()
    batches = math.ceil(examples / next(iter(test))[0].shape[0])
    images = test.take(batches).map(lambda x, y: x).cache()
    scores = np.stack([model.predict(images.map(lambda x, c=c: (x, tf.fill(
        tf.shape(x)[:1], tf.constant(c, tf.int32)))), verbose=0)[:examples]
        for c in range(NUM_CLASSES)], axis=1)
    labels = labels[:len(scores)]
    top = scores.max(1)
    marginal = top + np.log(np.exp(scores - top[:, None]).mean(1))
    return {"examples": len(scores),
            "marginal_bits_per_dim": bits_per_dim(marginal),
            "conditional_bits_per_dim_same_images": bits_per_dim(
                scores[np.arange(len(scores)), labels]),
            "generative_classifier_accuracy": round(float(
                (scores.argmax(1) == labels).mean()), 4),
            "seconds": round(time.perf_counter() - start, 1)}


def train_and_test(name: str, args: argparse.Namespace, pipelines: dict,
                   test_labels: np.ndarray) -> tuple[keras.Model, dict]:
    print(f"--- {name}")
    conditional = name == "conditional"
    keras.utils.set_random_seed(args.seed)
    model = build(conditional, args)
    data = pipelines if conditional else {k: drop_labels(v) for k, v in pipelines.items()}
    fit = common.train(model, types.SimpleNamespace(train=data["train"],
                                                    validation=data["validation"]),
                       epochs=args.epochs, learning_rate=args.learning_rate,
                       patience=args.patience)
    start = time.perf_counter()
    log_prob = model.predict(data["test"], verbose=0)
    test = {"bits_per_dim": bits_per_dim(log_prob),
            "nll_nats": round(-float(np.mean(log_prob)), 3), "examples": len(log_prob),
            "eval_seconds": round(time.perf_counter() - start, 1)}
    steps_per_epoch = (args.train_examples - round(0.1 * args.train_examples)) \
        // args.batch_size
    print(f"{name}: test {test['bits_per_dim']} bits/dim")
    record = {"parameters": model.count_params(), "test": test,
              "test_bits_per_dim_by_class": per_class(log_prob, test_labels),
              "steps_run": fit["epochs_run"] * steps_per_epoch,
              "steps_per_epoch": steps_per_epoch, **fit}
    return model, record


def samples(model: keras.Model, args: argparse.Namespace, temperature: float) -> np.ndarray:
    """`overflow_samples` samples, classes 0..9 in equal blocks for the conditional model."""
    n = args.overflow_samples - args.overflow_samples % NUM_CLASSES
    context = None
    if model.is_conditional:
        context = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), n // NUM_CLASSES)
    return model.sample(n, context=context, temperature=temperature, seed=args.seed).numpy()


def class_rows(images: np.ndarray, per_class_blocks: int) -> np.ndarray:
    """The first COLUMNS images of each class block, as one (10 * COLUMNS, ...) batch."""
    blocks = images.reshape(NUM_CLASSES, per_class_blocks, *images.shape[1:])
    return blocks[:, :COLUMNS].reshape(-1, *images.shape[1:])


def show_rows(ax, mosaic: np.ndarray, title: str, names: bool) -> None:
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    row = EVENT_SHAPE[0] + 1
    ax.set_yticks([1 + row * (c + 0.5) for c in range(NUM_CLASSES)] if names else [])
    if names:
        ax.set_yticklabels(common.FASHION_CLASSES, fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0)


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    record = {"experiment": "conditional_glow",
              "command": "python experiments/conditional_glow.py"
                         + (" --quick" if args.quick else ""),
              "machine": common.machine(), "settings": vars(args),
              "units": "test bits/dim in 8-bit pixel space (lower is better)",
              "model": f"Glow, {NUM_SCALES} scales on 28x28x1 (unpadded) x {args.depth} steps "
                       f"(ActNorm, LU 1x1 conv, affine coupling with sigmoid scale), "
                       f"{args.hidden} hidden channels, learned split prior; the conditional "
                       f"one with num_classes=10 (one-hot label into every conditioner and the "
                       f"split prior, class-conditional top prior)",
              "label_information_bound_bits_per_dim": round(
                  math.log2(NUM_CLASSES) / math.prod(EVENT_SHAPE), 4),
              "models": {}}
    arrays = common.fashion_mnist_arrays(args.data_dir)
    x_test = arrays["x_test"][:args.test_examples]
    y_test = arrays["y_test"][:args.test_examples].astype(np.int32)
    splits = common.fashion_mnist_splits(args.data_dir, args.train_examples, args.test_examples,
                                         args.batch_size, args.seed, labels=True)
    pipelines = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    models = {}
    for name in ("unconditional", "conditional"):
        models[name], record["models"][name] = train_and_test(name, args, pipelines, y_test)
    conditional = models["conditional"]
    record["conditional_marginal"] = marginal_and_classifier(
        conditional, pipelines["test"], y_test, min(args.marginal_examples, len(y_test)))
    gap = (record["models"]["unconditional"]["test"]["bits_per_dim"]
           - record["models"]["conditional"]["test"]["bits_per_dim"])
    record["unconditional_minus_conditional_bits_per_dim"] = round(gap, 4)
    print(f"unconditional - conditional: {gap:.4f} bits/dim; marginal of the conditional "
          f"model {record['conditional_marginal']['marginal_bits_per_dim']}")

    # Round trip of the conditional encode/decode (through numpy, past TFP's bijector cache).
    x = x_test[:64].astype(np.float32) + 0.5
    z = conditional.encode(x, context=y_test[:64]).numpy()
    record["round_trip_max_abs_error_pixels"] = float(
        np.max(np.abs(conditional.decode(z, context=y_test[:64]).numpy() - x)))

    data_rows = np.concatenate([x_test[y_test == c][:COLUMNS] for c in range(NUM_CLASSES)])
    fig, axes = plt.subplots(1, 1 + len(TEMPERATURES),
                             figsize=(2.9 * (1 + len(TEMPERATURES)) + 1.0, 4.0),
                             layout="constrained")
    show_rows(axes[0], common.tile(data_rows, COLUMNS), "test images", names=True)
    record["overflowed_samples"] = {}
    for ax, temperature in zip(axes[1:], TEMPERATURES, strict=True):
        counts = {}
        for name, model in models.items():
            drawn = samples(model, args, temperature)
            counts[name] = {"overflowed": common.overflowed(drawn), "of": len(drawn)}
            if name == "conditional":
                rows = class_rows(drawn, len(drawn) // NUM_CLASSES)
                title = f"conditional Glow, T = {temperature}"
                shown = common.overflowed(rows)
                if shown:
                    title += f"\n{shown} of {len(rows)} overflowed (black)"
                show_rows(ax, common.tile(common.to_pixels(rows), COLUMNS), title, names=False)
        record["overflowed_samples"][str(temperature)] = counts
        print(f"T = {temperature}: overflowed {counts}")
    test_bpd = record["models"]["conditional"]["test"]["bits_per_dim"]
    fig.suptitle(f"Class-conditional Glow on Fashion-MNIST, {test_bpd:.3f} bits/dim given the "
                 f"class (unconditional: "
                 f"{record['models']['unconditional']['test']['bits_per_dim']:.3f})",
                 fontsize=9)
    record["figure"] = common.save_figure(fig, "conditional_glow_samples.png", args.quick)
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    common.write_json("conditional_glow.json", record, args.quick)


if __name__ == "__main__":
    main()
