"""A mixture of von Mises distributions on the 2-torus, fit by circular spline couplings.

The target is a mixture of three products of von Mises distributions on [-pi, pi)^2, one of
them across the seam at +-pi. Its exact entropy comes from numerical integration on a uniform
periodic grid (the midpoint rule, which converges exponentially for a smooth periodic
integrand: the error estimate is the change from an N/2 grid to the N grid). A RealNVP on (2,)
with `transform="circular_spline"` (each coupling transforms one angle, its conditioner sees
the other angle as a number in [-pi, pi)) is trained by `model.fit` on samples; a RealNVP
with the interval spline (`transform="spline"`, a density on the plane) is the contrast.

Writes experiments/results/torus_von_mises.json and torus_von_mises.png.
"""

from __future__ import annotations

import argparse
import math
import time

import common
import keras
import matplotlib.pyplot as plt
import numpy as np
from scipy.special import erf

import tfp_flows

FIELDS = ("weight", "mu1", "mu2", "kappa1", "kappa2")  # mu: mean angle, kappa: concentration
COMPONENTS = ((0.40, 0.8, -1.5, 4.0, 2.0),
              (0.35, -1.6, 1.2, 2.0, 6.0),
              (0.25, 3.0, 2.4, 5.0, 3.0))
GRID = 1024
BINS = 8
NUM_COUPLINGS = 4
HIDDEN = 64
BATCH_SIZE = 256
LEARNING_RATE = 2e-3


def log_density(x: np.ndarray) -> np.ndarray:
    """log p(x) of the mixture, for angles x of shape (..., 2)."""
    terms = []
    for weight, mu1, mu2, k1, k2 in COMPONENTS:
        terms.append(math.log(weight)
                     + k1 * np.cos(x[..., 0] - mu1) - math.log(2 * math.pi * np.i0(k1))
                     + k2 * np.cos(x[..., 1] - mu2) - math.log(2 * math.pi * np.i0(k2)))
    return np.logaddexp.reduce(np.stack(terms), axis=0)


def sample(n: int, rng: np.random.Generator) -> np.ndarray:
    weights = np.array([c[0] for c in COMPONENTS])
    which = rng.choice(len(COMPONENTS), size=n, p=weights)
    params = np.array([c[1:] for c in COMPONENTS])[which]
    x = np.stack([rng.vonmises(params[:, 0], params[:, 2]),
                  rng.vonmises(params[:, 1], params[:, 3])], axis=-1)
    return (np.mod(x + np.pi, 2 * np.pi) - np.pi).astype("float32")  # in [-pi, pi)


def grid(n: int) -> tuple[np.ndarray, float]:
    """The midpoints of an n x n grid of the torus, shape (n, n, 2), and the cell area."""
    h = 2 * math.pi / n
    axis = -math.pi + h * (np.arange(n) + 0.5)
    a, b = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([a, b], axis=-1), h * h


def entropy(n: int) -> tuple[float, float]:
    """(-integral p log p, integral p) by the midpoint rule on an n x n grid."""
    points, area = grid(n)
    log_p = log_density(points)
    p = np.exp(log_p)
    return float(-np.sum(p * log_p) * area), float(np.sum(p) * area)


def model_log_density(model, points: np.ndarray) -> np.ndarray:
    flat = points.reshape(-1, 2).astype("float32")
    out = np.concatenate([model.log_prob(flat[i:i + 65536]).numpy()
                          for i in range(0, len(flat), 65536)])
    return out.reshape(points.shape[:-1])


def train(transform: dict, x_train, x_test, log_p_test, epochs: int, seed: int) -> dict:
    keras.utils.set_random_seed(seed)
    model = tfp_flows.realnvp((2,), num_couplings=NUM_COUPLINGS, hidden=HIDDEN, num_hidden=2,
                              transform=transform)
    steps = epochs * math.ceil(len(x_train) / BATCH_SIZE)
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
    model.compile(keras.optimizers.Adam(schedule))
    start = time.perf_counter()
    model.fit(x_train, batch_size=BATCH_SIZE, epochs=epochs, verbose=0, shuffle=True)
    seconds = time.perf_counter() - start
    log_q = model.log_prob(x_test).numpy()
    gap = log_p_test - log_q  # KL(p || q) estimate per test point
    points, area = grid(256)
    mass = float(np.sum(np.exp(model_log_density(model, points))) * area)
    return {"model": model, "record": {
        "transform": transform, "train_steps": steps, "train_seconds": round(seconds, 1),
        "test_nll_nats": round(float(-np.mean(log_q)), 4),
        "kl_estimate_nats": round(float(np.mean(gap)), 4),
        "kl_standard_error_nats": round(float(np.std(gap) / math.sqrt(len(gap))), 4),
        "model_mass_on_torus": round(mass, 5)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch on 5000 points, a smoke test "
                             "(writes to $TMPDIR/tfp_flows_quick)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--train_points", type=int, default=60000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    epochs, train_points = (1, 5000) if args.quick else (args.epochs, args.train_points)
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    x_train, x_test = sample(train_points, rng), sample(20000, rng)
    log_p_test = log_density(x_test.astype("float64"))

    h_fine, mass_fine = entropy(GRID)
    h_coarse, _ = entropy(GRID // 2)
    # The normal base has mass erf(pi / sqrt 2)^2 on [-pi, pi)^2: the circular flow's density
    # integrates to that on the torus, and dividing it out lowers its NLL by this much.
    base_mass = erf(math.pi / math.sqrt(2)) ** 2
    circular = train({"name": "circular_spline", "bins": BINS}, x_train, x_test, log_p_test,
                     epochs, args.seed)
    interval = train({"name": "spline", "bins": BINS, "bound": 4.0}, x_train, x_test,
                     log_p_test, epochs, args.seed)
    c, s = circular["record"], interval["record"]
    c["test_nll_normalized_nats"] = round(c["test_nll_nats"] + math.log(base_mass), 4)
    entropy_nats = round(h_fine, 6)
    for r in (c, s):
        r["nll_minus_entropy_nats"] = round(r["test_nll_nats"] - entropy_nats, 4)
    c["normalized_nll_minus_entropy_nats"] = round(c["test_nll_normalized_nats"] - entropy_nats, 4)
    c["target_within_0.05_nats"] = bool(c["normalized_nll_minus_entropy_nats"] <= 0.05)

    command = "python experiments/torus_von_mises.py" + (" --quick" if args.quick else "")
    record = {
        "experiment": "torus_von_mises", "command": command, "machine": common.machine(),
        "target": {"components": [dict(zip(FIELDS, c_, strict=True)) for c_ in COMPONENTS],
                   "entropy_nats": entropy_nats,
                   "entropy_grid": f"{GRID}x{GRID} midpoint rule",
                   "entropy_error_estimate_nats": abs(h_fine - h_coarse),
                   "density_integral_on_grid": round(mass_fine, 12)},
        "data": {"train_points": train_points, "test_points": len(x_test)},
        "model": f"RealNVP on (2,), {NUM_COUPLINGS} couplings (each transforms one angle, "
                 f"conditioner 2x{HIDDEN} ReLU fed the other angle as is), {BINS} bins; "
                 f"Adam {LEARNING_RATE} cosine-decayed, batch {BATCH_SIZE}, {epochs} epochs",
        "units": "nats per point; kl_estimate is mean(log p - log q) on the test points (the "
                 "NLL gap without the sampling noise of the entropy); model_mass_on_torus is "
                 "the model density's integral over [-pi, pi)^2 on a 256x256 grid",
        "circular_spline": c, "spline": s}

    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    points, _ = grid(200)
    panels = [("target", log_density(points)),
              (f"circular_spline: NLL-H = {c['normalized_nll_minus_entropy_nats']:.3f}",
               model_log_density(circular["model"], points)),
              (f"spline (plane): NLL-H = {s['nll_minus_entropy_nats']:.3f}",
               model_log_density(interval["model"], points))]
    vmax = float(np.exp(panels[0][1]).max())
    for ax, (title, log_q) in zip(axes, panels, strict=True):
        ax.imshow(np.exp(log_q).T, origin="lower", extent=(-np.pi, np.pi, -np.pi, np.pi),
                  vmin=0, vmax=vmax, cmap="viridis")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("angle 1")
    axes[0].set_ylabel("angle 2")
    fig.suptitle("Density on the torus [-pi, pi)^2 (edges identified)", fontsize=11)
    record["figure"] = common.save_figure(fig, "torus_von_mises.png", args.quick)
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    common.write_json("torus_von_mises.json", record, args.quick)


if __name__ == "__main__":
    main()
