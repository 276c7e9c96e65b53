"""A conditional 2-D toy: a ring whose radius is a real context c, NSF with context_shape=(1,).

    python experiments/conditional_toy_2d.py           # about 8 minutes on 2 busy CPU cores
    python experiments/conditional_toy_2d.py --quick   # a smoke test, about a minute

Data: c ~ Uniform[0, 1], angle ~ Uniform[0, 2 pi), x = r(c) (cos, sin)(angle) + N(0, s^2 I)
with radius r(c) = 1 + 2c and noise s = 0.15; 20,000 training pairs (x, c) (10% held out for
validation and early stopping) and 5,000 test pairs. The exact densities are known:
p(x | c) = exp(-(|x| - r)^2 / (2 s^2)) i0e(|x| r / s^2) / (2 pi s^2) (the ring convolved with
the noise; i0e is the scaled Bessel function I0), and the pooled p(x) = integral of p(x | c)
over c (on a fine grid of c), so the test NLLs sit beside the lowest reachable ones, the
entropies H(x | c) and H(x).

Models: two neural spline flows of the same size (`tfp_flows.nsf((2,), ...)`: 4
rational-quadratic spline couplings with 8 bins on [-4, 4], conditioners 2x64 ReLU), trained
with Adam (batches of 1024) for the same steps on the same batches:
- `conditional`: p(x | c), `context_shape=(1,)`; c is concatenated to every conditioner's input.
- `unconditional`: p(x) on the pooled points (c dropped).

Numbers (nats per 2-D point, lower is better): the conditional test NLL -log p(x | c) against
the unconditional -log p(x); their gap estimates the information the context carries about x,
I(x; c) = H(x) - H(x | c), given beside it from the exact densities. Also the conditional
model's own marginal p(x) = mean over a grid of c of p(x | c), the fair comparison with the
unconditional flow, and the conditional NLL by context bin.
Figure: one column per context value c (0, 0.25, 0.5, 0.75, 1) and one for the pooled data;
rows: the exact density, the flow's density exp(log p(x | c)) (the unconditional flow's in
the pooled column), and 1,000 samples of the flow over 1,000 exact samples.
Writes experiments/results/conditional_toy_2d.json and conditional_toy_2d.png.
"""

from __future__ import annotations

import argparse
import time
import types

import common
import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from scipy.special import i0e

import tfp_flows

NOISE = 0.15
NUM_COUPLINGS = 4
BATCH_SIZE = 1024
LEARNING_RATE = 2e-3
STEPS_PER_EVALUATION = 100
LIMIT = 4.0
GRID = 120
PLOTTED_POINTS = 1000
CONTEXTS = (0.0, 0.25, 0.5, 0.75, 1.0)
CONTEXT_GRID = 200  # values of c the pooled densities are averaged over
BINS = 5  # context bins of the per-bin NLL


def radius(c: np.ndarray) -> np.ndarray:
    return 1.0 + 2.0 * c


def sample(n: int, rng: np.random.Generator, c: np.ndarray | None = None):
    """`n` points x and their contexts c (drawn uniformly unless given), float32."""
    if c is None:
        c = rng.uniform(0.0, 1.0, n)
    c = np.broadcast_to(np.asarray(c, np.float64), (n,))
    angle = rng.uniform(0.0, 2 * np.pi, n)
    x = radius(c)[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    x = x + NOISE * rng.standard_normal((n, 2))
    return x.astype(np.float32), c[:, None].astype(np.float32)


def true_log_density(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Exact log p(x | c) of each row of x given each c (broadcast)."""
    rho = np.linalg.norm(x.astype(np.float64), axis=-1)
    r = radius(np.asarray(c, np.float64))
    return (-np.log(2 * np.pi * NOISE**2) - (rho - r) ** 2 / (2 * NOISE**2)
            + np.log(i0e(rho * r / NOISE**2)))


def log_mean_exp(a: np.ndarray, axis: int) -> np.ndarray:
    top = a.max(axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.exp(a - top).mean(axis))


def context_grid() -> np.ndarray:
    """Midpoints of CONTEXT_GRID equal cells of [0, 1]: the pooled density's quadrature."""
    return (np.arange(CONTEXT_GRID) + 0.5) / CONTEXT_GRID


def true_pooled_log_density(x: np.ndarray) -> np.ndarray:
    grid = context_grid()
    return log_mean_exp(np.stack([true_log_density(x, np.full(len(x), c)) for c in grid], 1), 1)


def model_pooled_log_density(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The conditional flow's marginal: log of the mean over the c grid of p(x | c)."""
    columns = [model.log_prob(x, context=np.array([c], np.float32)).numpy()
               for c in context_grid()]
    return log_mean_exp(np.stack(columns, 1), 1)


def build(conditional: bool, hidden: int) -> keras.Model:
    options = {"context_shape": (1,)} if conditional else {}
    return tfp_flows.nsf((2,), num_couplings=NUM_COUPLINGS, hidden=hidden, num_hidden=2,
                         **options)


def pipelines(x: np.ndarray, c: np.ndarray, x_test: np.ndarray, c_test: np.ndarray,
              seed: int) -> dict[str, tf.data.Dataset]:
    held_out = len(x) // 10
    train = tf.data.Dataset.from_tensor_slices((x[held_out:], c[held_out:]))
    return {"train": train.shuffle(len(x) - held_out, seed=seed, reshuffle_each_iteration=True)
            .batch(BATCH_SIZE, drop_remainder=True),
            "validation": tf.data.Dataset.from_tensor_slices(
                (x[:held_out], c[:held_out])).batch(1024),
            "test": tf.data.Dataset.from_tensor_slices((x_test, c_test)).batch(1024)}


def density_grid(log_prob) -> np.ndarray:
    axis = np.linspace(-LIMIT, LIMIT, GRID, dtype=np.float32)
    xx, yy = np.meshgrid(axis, axis)
    return np.exp(log_prob(np.stack([xx.ravel(), yy.ravel()], axis=1))).reshape(GRID, GRID)


def panel(ax, title: str | None = None) -> None:
    ax.set_xlim(-LIMIT, LIMIT)
    ax.set_ylim(-LIMIT, LIMIT)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="100 steps, a smoke test (writes to $TMPDIR/tfp_flows_quick)")
    parser.add_argument("--steps", type=int, default=800,
                        help=f"training steps per model, a multiple of {STEPS_PER_EVALUATION}")
    parser.add_argument("--train_points", type=int, default=20_000)
    parser.add_argument("--test_points", type=int, default=5_000)
    parser.add_argument("--hidden", type=int, default=64, help="units of the 2 hidden layers")
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.train_points, args.test_points = STEPS_PER_EVALUATION, 5000, 1000
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    x, c = sample(args.train_points, rng)
    x_test, c_test = sample(args.test_points, rng)
    data = pipelines(x, c, x_test, c_test, args.seed)
    record = {"experiment": "conditional_toy_2d",
              "command": "python experiments/conditional_toy_2d.py"
                         + (" --quick" if args.quick else ""),
              "machine": common.machine(), "settings": vars(args),
              "data": f"ring of radius 1 + 2c, c ~ U[0, 1], uniform angle, Gaussian noise "
                      f"{NOISE}; {args.train_points} training pairs (10% validation), "
                      f"{args.test_points} test pairs",
              "model": f"NSF, {NUM_COUPLINGS} rational-quadratic spline couplings (8 bins on "
                       f"[-4, 4]), conditioners 2x{args.hidden} ReLU; Adam {LEARNING_RATE}, "
                       f"batch {BATCH_SIZE}, up to {args.steps} steps, early stopping on "
                       f"validation NLL every {STEPS_PER_EVALUATION} steps (patience "
                       f"{args.patience}, best weights restored)",
              "units": "test NLL in nats per 2-D point (lower is better)", "models": {}}
    true_conditional = true_log_density(x_test, c_test[:, 0])
    true_pooled = true_pooled_log_density(x_test)
    models = {}
    for name in ("conditional", "unconditional"):
        print(f"--- {name}")
        keras.utils.set_random_seed(args.seed)
        model = build(name == "conditional", args.hidden)
        splits = data if name == "conditional" else {
            k: ds.map(lambda x, c: x) for k, ds in data.items()}
        fit = common.train(model, types.SimpleNamespace(train=splits["train"],
                                                        validation=splits["validation"]),
                           epochs=max(1, args.steps // STEPS_PER_EVALUATION),
                           steps_per_epoch=STEPS_PER_EVALUATION,
                           learning_rate=LEARNING_RATE, patience=args.patience)
        log_prob = model.predict(splits["test"], verbose=0)
        models[name] = model
        record["models"][name] = {
            "parameters": model.count_params(), "test_nll_nats": round(-float(log_prob.mean()), 4),
            "steps_run": fit["epochs_run"] * STEPS_PER_EVALUATION,
            **{k: fit[k] for k in ("epochs_run", "best_epoch", "train_seconds")}}
        if name == "conditional":
            bins = np.minimum((c_test[:, 0] * BINS).astype(int), BINS - 1)
            record["models"][name]["test_nll_nats_by_context_bin"] = {
                f"[{b / BINS:.1f}, {(b + 1) / BINS:.1f})": {
                    "flow": round(-float(log_prob[bins == b].mean()), 4),
                    "exact": round(-float(true_conditional[bins == b].mean()), 4)}
                for b in range(BINS)}
        print(f"{name}: test NLL {record['models'][name]['test_nll_nats']} nats")
    conditional, unconditional = models["conditional"], models["unconditional"]
    marginal = model_pooled_log_density(conditional, x_test)
    nll = {name: record["models"][name]["test_nll_nats"] for name in models}
    record["comparison"] = {
        "conditional_nll_given_c": nll["conditional"],
        "unconditional_nll": nll["unconditional"],
        "exact_entropy_given_c": round(-float(true_conditional.mean()), 4),
        "exact_entropy_pooled": round(-float(true_pooled.mean()), 4),
        "unconditional_minus_conditional": round(nll["unconditional"] - nll["conditional"], 4),
        "exact_information_I_x_c": round(float(true_conditional.mean() - true_pooled.mean()), 4),
        "conditional_model_marginal_nll": round(-float(marginal.mean()), 4),
        "note": "exact entropies are -mean log p_true over the test points (the lowest "
                "reachable NLLs); the conditional model's marginal averages p(x | c) over "
                f"{CONTEXT_GRID} values of c in [0, 1]"}

    fig, axes = plt.subplots(3, len(CONTEXTS) + 1, figsize=(2.0 * (len(CONTEXTS) + 1), 6.3),
                             layout="constrained")
    style = {"s": 1, "alpha": 0.35, "rasterized": True}
    for column, value in enumerate((*CONTEXTS, None)):
        if value is None:
            exact = density_grid(true_pooled_log_density)
            learned = density_grid(lambda p: unconditional.log_prob(p).numpy())
            true_points, _ = sample(PLOTTED_POINTS, rng)
            flow_points = unconditional.sample(PLOTTED_POINTS, seed=args.seed).numpy()
            title = "pooled p(x)"
        else:
            exact = density_grid(lambda p, v=value: true_log_density(p, np.full(len(p), v)))
            learned = density_grid(lambda p, v=value: conditional.log_prob(
                p, context=np.array([v], np.float32)).numpy())
            true_points, _ = sample(PLOTTED_POINTS, rng, c=value)
            flow_points = conditional.sample(PLOTTED_POINTS, context=np.array([value], np.float32),
                                             seed=args.seed).numpy()
            title = f"c = {value} (r = {radius(value):.1f})"
        for row, density in enumerate((exact, learned)):
            axes[row, column].imshow(density, origin="lower", cmap="viridis",
                                     extent=(-LIMIT, LIMIT, -LIMIT, LIMIT))
            panel(axes[row, column], title if row == 0 else None)
        axes[2, column].scatter(true_points[:, 0], true_points[:, 1], c="tab:blue", **style)
        axes[2, column].scatter(flow_points[:, 0], flow_points[:, 1], c="tab:orange", **style)
        panel(axes[2, column])
    axes[0, 0].set_ylabel("exact density", fontsize=9)
    axes[1, 0].set_ylabel("flow density", fontsize=9)
    axes[2, 0].set_ylabel("samples: exact (blue),\nflow (orange)", fontsize=9)
    axes[1, -1].set_xlabel("unconditional flow", fontsize=8)
    fig.suptitle(f"Conditional NSF, test NLL {nll['conditional']:.3f} nats given c "
                 f"(unconditional {nll['unconditional']:.3f})", fontsize=10)
    record["figure"] = common.save_figure(fig, "conditional_toy_2d.png", args.quick)
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    common.write_json("conditional_toy_2d.json", record, args.quick)


if __name__ == "__main__":
    main()
