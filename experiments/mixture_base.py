"""A Gaussian-mixture base against the standard normal under the same RealNVP, on eight
Gaussians (issue 18, "Bases at work").

    python experiments/mixture_base.py            # a few CPU-minutes
    python experiments/mixture_base.py --quick    # 1 epoch of 2,000 points: a smoke test

The data are the issue's eight Gaussians (radius 2, std 0.1; toy_2d_table.issue_eight_gaussians,
sharper than tfp_flows.datasets' "eight_gaussians"), 20,000 training and 5,000 test points.
Two RealNVPs of 4 affine couplings with conditioners of 2 x 64 ReLUs, identical but for
`base=`: `tfp_flows.bases.GaussianMixture(8)` (weights, means and scales learned) or the
standard normal N(0, I). Both see the same stream of batches from the same initial coupling
weights, with the same optimizer and number of steps, and are scored by their exact test NLL
(nats per point) beside the data's entropy: a coupling flow is a diffeomorphism of the plane,
so from a unimodal base it must stretch one blob into eight and keeps bridges of density
between them; a mixture base can put a component under each mode.
Writes experiments/results/mixture_base.json and mixture_base.png.
"""

from __future__ import annotations

import argparse
import time

import common
import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
import toy_2d
import toy_2d_table

import tfp_flows
from tfp_flows import bases

NUM_COUPLINGS = 4
HIDDEN = 64
NUM_COMPONENTS = 8
EPOCHS = 100
QUICK_TRAIN_POINTS = 2000
BASES = {
    "normal": ("N(0, I)", lambda: "normal"),
    "gaussian_mixture": (f"GaussianMixture({NUM_COMPONENTS})",
                         lambda: bases.GaussianMixture(NUM_COMPONENTS)),
}


def train(name: str, data: dict, stream: np.ndarray, seed: int) -> tuple[dict, keras.Model]:
    """RealNVP with base `name` trained on `stream`: its record and the model."""
    keras.utils.set_random_seed(seed)  # the same coupling weights for every base
    model = tfp_flows.realnvp((2,), num_couplings=NUM_COUPLINGS, hidden=HIDDEN,
                              base=BASES[name][1]())
    steps = len(stream) // toy_2d_table.BATCH_SIZE
    model.compile(toy_2d_table.optimizer(steps))
    start = time.perf_counter()
    history = model.fit(stream, batch_size=toy_2d_table.BATCH_SIZE, epochs=1, shuffle=False,
                        verbose=0)
    seconds = time.perf_counter() - start
    log_prob = tf.function(model.log_prob)
    nll = -float(np.mean(np.concatenate([log_prob(x).numpy() for x in np.array_split(
        data["x_test"], 5)])))
    return {"label": BASES[name][0], "test_nll_nats": round(nll, 3),
            "train_nll_nats_mean_over_run": round(float(history.history["loss"][-1]), 3),
            "parameters": model.count_params(), "train_seconds": round(seconds, 1)}, model


def plot(models: dict, record: dict, x_test: np.ndarray, quick: bool) -> str:
    fig, axes = plt.subplots(1, 1 + len(models), figsize=(4 * (1 + len(models)), 4))
    axes[0].scatter(*x_test[:toy_2d.PLOTTED_POINTS].T, s=1, alpha=0.4, c="tab:blue",
                    rasterized=True)
    axes[0].set_title(f"data (test), entropy {record['data_entropy_nats']:.3f}", fontsize=10)
    for ax, (name, model) in zip(axes[1:], models.items(), strict=True):
        ax.imshow(toy_2d.density_grid(model), origin="lower", cmap="viridis",
                  extent=(-toy_2d.LIMIT, toy_2d.LIMIT, -toy_2d.LIMIT, toy_2d.LIMIT))
        result = record["bases"][name]
        ax.set_title(f"base {result['label']}: test NLL {result['test_nll_nats']:.3f}",
                     fontsize=10)
    for ax in axes:
        ax.set_xlim(-toy_2d.LIMIT, toy_2d.LIMIT)
        ax.set_ylim(-toy_2d.LIMIT, toy_2d.LIMIT)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    return common.save_figure(fig, "mixture_base.png", quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"1 epoch of {QUICK_TRAIN_POINTS} points, a smoke test (writes to "
                             f"$TMPDIR/tfp_flows_quick)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    epochs = 1 if args.quick else args.epochs
    train_points = QUICK_TRAIN_POINTS if args.quick else toy_2d_table.TRAIN_POINTS
    data = toy_2d_table.load(toy_2d_table.ISSUE_TOY, args.seed, train_points)
    stream = toy_2d_table.batch_stream(data["x_train"], epochs, args.seed)
    settings = toy_2d_table.settings(epochs, args.seed, train_points)
    entropy = toy_2d.entropy_of(toy_2d_table.ISSUE_TOY, data["x_test"])
    components = np.log(2 * np.pi * np.e * toy_2d_table.ISSUE_STD**2) + np.log(NUM_COMPONENTS)
    record = {
        "experiment": "mixture_base",
        "command": "python experiments/mixture_base.py" + (" --quick" if args.quick else (
            f" --epochs {epochs}" if epochs != EPOCHS else "")),
        "machine": common.machine(),
        "data": f"eight Gaussians of std {toy_2d_table.ISSUE_STD} centred on a circle of radius "
                f"{toy_2d_table.ISSUE_RADIUS} (toy_2d_table.issue_eight_gaussians, seed "
                f"{args.seed})",
        "model": f"tfp_flows.realnvp((2,), num_couplings={NUM_COUPLINGS}, hidden={HIDDEN}) "
                 f"(affine couplings, tanh log-scale, conditioners 2x{HIDDEN} ReLU), base= "
                 f"each of {[label for label, _ in BASES.values()]}, the same initial coupling "
                 f"weights",
        **{k: settings[k] for k in ("train_points", "test_points", "epochs", "batch_size",
                                    "steps", "optimizer", "data_order", "seed")},
        "units": "test NLL in nats per 2-D point (lower is better); data_entropy_nats is "
                 "-mean log p_true over the test points, the lowest NLL any model can reach",
        **entropy,
        "data_entropy_closed_form_nats": round(float(components), 3),
        "data_entropy_closed_form_note": "log 8 + log(2 pi e std^2): the modes are 15 std "
                                         "apart, so their overlap is negligible",
        "bases": {},
    }
    models = {}
    for name in BASES:
        record["bases"][name], models[name] = train(name, data, stream, args.seed)
        gap = record["bases"][name]["test_nll_nats"] - entropy["data_entropy_nats"]
        record["bases"][name]["gap_to_entropy_nats"] = round(gap, 3)
        print(f"{name}: {record['bases'][name]}")
    mixture = models["gaussian_mixture"].flow.base
    record["learned_mixture"] = {
        "weights": np.round(tf.nn.softmax(mixture.logits).numpy().astype(float), 3).tolist(),
        "means": np.round(mixture.loc.numpy().astype(float), 2).tolist(),
        "scales": np.round(np.exp(mixture.log_scale.numpy()).astype(float), 3).tolist()}
    record["figure"] = plot(models, record, data["x_test"], args.quick)
    common.write_json("mixture_base.json", record, args.quick)


if __name__ == "__main__":
    main()
