"""Latent attribute manipulation with Glow, as in the Glow demo, on Fashion-MNIST classes.

    python experiments/attribute_manipulation.py           # reuses glow_images.py's model
    python experiments/attribute_manipulation.py --quick   # a smoke test
    python experiments/attribute_manipulation.py --retrain # train the Glow here (~7 minutes)

The Glow demo ("make the face smile") takes a direction in latent space from labelled data,
d = mean z of images with the attribute - mean z of images without it, and moves a new image
along it: x' = decode(encode(x) + alpha d). CelebA's attributes become Fashion-MNIST's classes
here: "sneaker -> ankle boot" (grow a shaft) and "t-shirt/top -> pullover" (grow long sleeves).
z = encode(x) has the image's shape (every level's latent put back in place), so d is a 28x28
latent image. alpha = 0 is the round trip, alpha = 1 moves the source class mean onto the
target class mean, negative alpha moves away from the target.

The model is experiments/results/glow_fashion.keras, written by glow_images.py; when it is
missing (or with --retrain) this script trains the same Glow first, with glow_images.py's
flags. Data: `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or --data_dir.

Numbers: there is no published number for this (the Glow paper shows pictures); as a measure,
a logistic-regression classifier on pixels (trained on training images, its test accuracy
reported) labels the manipulated test images, and the JSON gives for each strength the
fraction of the finite decodings classified as the target class, and apart from it the
fraction whose decoding overflowed float32 (not scored: it is no image). Writes
experiments/results/attribute_manipulation.json and attribute_manipulation.png.
"""

from __future__ import annotations

import argparse
import time

import common
import glow_images
import keras
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression


def _share(hits: np.ndarray) -> float | None:
    """The fraction of True in `hits`, or None when there is nothing to score."""
    return round(float(np.mean(hits)), 3) if len(hits) else None


# (source class, target class) by index into common.FASHION_CLASSES.
ATTRIBUTES = ((7, 9), (0, 2))
STRENGTHS = (-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
SHOWN = 4
SCORED = 100
CLASSIFIER_EXAMPLES = 10_000


def load_or_train(args: argparse.Namespace) -> tuple[keras.Model, str]:
    path = glow_images.model_path(args.quick)
    if path.exists() and not args.retrain:
        return keras.models.load_model(path), f"loaded from {common.shown_path(path)}"
    model, fit = glow_images.train_glow(args)
    return model, f"trained here: {fit['description']}, test {fit['test']['bits_per_dim']} bpd"


def encode(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return np.concatenate([model.encode(x[i:i + batch_size]).numpy()
                           for i in range(0, len(x), batch_size)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    glow_images.add_arguments(parser)
    parser.add_argument("--retrain", action="store_true",
                        help="train the Glow even if glow_fashion.keras exists")
    parser.add_argument("--per_class", type=int, default=500,
                        help="training images per class for the mean latents")
    args = parser.parse_args()
    glow_images.apply_quick(args)
    per_class = 50 if args.quick else args.per_class
    start = time.perf_counter()
    model, source = load_or_train(args)
    arrays = common.fashion_mnist_arrays(args.data_dir)
    x_train, y_train = arrays["x_train"], arrays["y_train"]
    x_test, y_test = arrays["x_test"], arrays["y_test"]
    rng = np.random.default_rng(args.seed)

    classifier_examples = 2000 if args.quick else CLASSIFIER_EXAMPLES
    classifier = LogisticRegression(max_iter=300)
    classifier.fit(x_train[:classifier_examples].reshape(classifier_examples, -1) / 255.0,
                   y_train[:classifier_examples])
    accuracy = classifier.score(x_test.reshape(len(x_test), -1) / 255.0, y_test)

    flow = model.flow
    record = {"experiment": "attribute_manipulation",
              "command": "python experiments/attribute_manipulation.py"
                         + (" --quick" if args.quick else ""),
              "machine": common.machine(), "model": source,
              "model_size": {"num_scales": flow.num_scales, "depth": flow.depth,
                             "hidden": flow.hidden},
              "direction": "mean encode(x) of target-class training images - mean of source "
                           f"class, {per_class} dequantized images each",
              "classifier": {"kind": "logistic regression on pixels / 255",
                             "training_images": classifier_examples,
                             "test_accuracy": round(float(accuracy), 4)},
              "strengths": list(STRENGTHS), "attributes": {}}
    panels = []
    for source_class, target_class in ATTRIBUTES:
        name = f"{common.FASHION_CLASSES[source_class]} -> {common.FASHION_CLASSES[target_class]}"
        print(f"--- {name}")
        means = []
        for label in (source_class, target_class):
            images = x_train[y_train == label][:per_class].astype(np.float32)
            means.append(encode(model, images + rng.uniform(size=images.shape)).mean(0))
        direction = means[1] - means[0]
        x = x_test[y_test == source_class][:SCORED].astype(np.float32) + 0.5
        z = encode(model, x)
        target_share, source_share, overflow_share, frames = [], [], [], []
        for strength in STRENGTHS:
            decoded = model.decode(z + strength * direction).numpy()
            # Only finite decodings are scored: an overflowed one is no image of any class.
            finite = np.isfinite(decoded.reshape(len(decoded), -1)).all(axis=1)
            labels = classifier.predict(
                common.to_pixels(decoded[finite]).reshape(int(finite.sum()), -1) / 255.0)
            target_share.append(_share(labels == target_class))
            source_share.append(_share(labels == source_class))
            overflow_share.append(common.overflowed(decoded) / len(decoded))
            frames.append(decoded[:SHOWN])
        record["attributes"][name] = {
            "test_images_scored": len(x),
            "fraction_classified_as_target": target_share,
            "fraction_classified_as_source": source_share,
            "fraction_overflowed": overflow_share,
            "direction_norm": round(float(np.linalg.norm(direction)), 2),
            "typical_latent_norm": round(float(np.linalg.norm(z.reshape(len(z), -1), axis=1)
                                               .mean()), 2)}
        print(f"target share by strength {dict(zip(STRENGTHS, target_share, strict=True))}")
        # Rows: test images; columns: the original, then each strength.
        grid = np.stack([x[:SHOWN], *frames], axis=1).reshape(-1, *x.shape[1:])
        panels.append((name, common.tile(common.to_pixels(grid), len(STRENGTHS) + 1)))

    fig, axes = plt.subplots(len(panels), 1, figsize=(4.6, 2.9 * len(panels)))
    columns = ["test x"] + [f"{s:g}" for s in STRENGTHS]
    for ax, (name, mosaic) in zip(np.atleast_1d(axes), panels, strict=True):
        common.show(ax, mosaic, f"{name}: decode(z + alpha d)")
        ax.axis("on")
        # Column centres in the mosaic: 28-pixel images with tile's 1-pixel padding.
        ax.set_xticks(15 + 29 * np.arange(len(columns)), columns, fontsize=8)
        ax.set_yticks([])
        ax.tick_params(length=0)
        ax.set_xlabel("alpha", fontsize=8)
    record["figure"] = common.save_figure(fig, "attribute_manipulation.png", args.quick)
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    common.write_json("attribute_manipulation.json", record, args.quick)


if __name__ == "__main__":
    main()
