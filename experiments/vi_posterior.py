"""IAF, MAF, planar and radial flows as variational posteriors via tfp.vi.

    python experiments/vi_posterior.py           # 2 targets x 6 posteriors, ~15 min on 2 busy CPUs
    python experiments/vi_posterior.py --quick   # a smoke test (writes to $TMPDIR/tfp_flows_quick)

A FlowModel's `model.distribution` is a `tfd.TransformedDistribution` whose `trainable_variables`
are the model's own variables as `tf.Variable`s, so it goes straight into TFP's variational
inference, trained by a Keras 3 optimizer (`keras.optimizers.Adam` takes the plain tf.Variables):

    model = tfp_flows.iaf((2,), hidden=64, num_layers=4)
    q = model.distribution
    losses = tfp.vi.fit_surrogate_posterior(target_log_prob, q, keras.optimizers.Adam(3e-3),
                                            num_steps, trainable_variables=q.trainable_variables)

Each step draws `sample_size` z ~ q with their log q(z) (`experimental_sample_and_log_prob`) and
descends the negative ELBO  -E_q[log p~(z) - log q(z)]. An IAF samples in one pass and, because
TFP's bijector cache keeps the latent of every sample it drew, scores its own samples without
the D sequential passes its density otherwise costs; a MAF must sample sequentially (D passes).
The recorded time per step contrasts the two (D = 2 here, so the gap is at most about 2x).

Targets (z = (z1, z2)), both written as normalised densities, so log Z = 0 and
KL(q || p) = log Z - ELBO = -ELBO:

* banana: z1 ~ N(0, 2^2), z2 | z1 ~ N(0.5 (z1^2 - 4), 1)
* Neal's funnel in 2-D: v = z1 ~ N(0, 3^2), x = z2 | v ~ N(0, exp(v)), i.e. standard deviation
  exp(v / 2)

Both are autoregressive-affine in the order z1 -> z2, so an affine autoregressive flow can fit
them exactly and its KL can go to 0; the mean-field Gaussian cannot. The normalisers are also
checked numerically on a grid (`normaliser_check_log_integral` in the JSON).

Posteriors, all starting at N(0, I) (the flows' last MADE layers start at zero): the mean-field
Gaussian baseline (independent `tfd.Normal`s with trainable loc and softplus scale), an IAF and a
MAF (`num_layers` MADE layers of 2 x `hidden` ReLU units, log-scales soft-clamped to +-3, the
default). At a small parameter count, three more: a small IAF (`small_layers` MADE layers of
2 x `small_hidden` units) and the planar and radial flows of Rezende and Mohamed (2015),
whose `num_layers` is the small IAF's parameter count divided by a layer's (2D + 1 = 5 for
planar, D + 2 = 4 for radial), rounded: the three counts match within a layer's parameters.
(Matching the large IAF's 18,448 would take about 3,700 planar layers.) The planar and radial
flows start near the identity (see `tfp_flows.families.planar.PlanarSteps`, `RadialSteps`).
Every fit uses the same optimizer,
learning rate, number of steps, sample size and seeds. The final ELBO is estimated with
`eval_samples` samples drawn with a fixed seed, with its standard error, the importance-sampled
log Z estimate (log mean exp(log p - log q), <= log Z in expectation) and the effective sample
size of the importance weights (where the ESS is near 0, as for the mean-field fits, a few huge
weights dominate and the IS estimate is noise, even above log Z). Time per step is the median
interval between the steps' `tf.timestamp()`s inside TFP's training loop (tracing excluded);
wall time includes tracing.

Writes experiments/results/vi_posterior.json and vi_posterior.png; prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import time

import common
import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_flows

tfb = tfp.bijectors
tfd = tfp.distributions

POSTERIORS = ("mean_field", "iaf", "maf", "iaf_small", "planar", "radial")
LABELS = {"mean_field": "mean-field Gaussian", "iaf": "IAF", "maf": "MAF",
          "iaf_small": "IAF (small)", "planar": "planar", "radial": "radial"}
COLORS = {"mean_field": "tab:gray", "iaf": "tab:orange", "maf": "tab:blue",
          "iaf_small": "tab:brown", "planar": "tab:green", "radial": "tab:purple"}


# ------------------------------------------------------------------------------------ targets

def banana_log_prob(z):
    """log p(z) of z1 ~ N(0, 2^2), z2 | z1 ~ N(0.5 (z1^2 - 4), 1); normalised (log Z = 0)."""
    z1, z2 = z[..., 0], z[..., 1]
    return (tfd.Normal(0.0, 2.0).log_prob(z1)
            + tfd.Normal(0.5 * (tf.square(z1) - 4.0), 1.0).log_prob(z2))


def funnel_log_prob(z):
    """log p(v, x) of Neal's funnel, v ~ N(0, 3^2), x | v ~ N(0, exp(v)); normalised."""
    v, x = z[..., 0], z[..., 1]
    return tfd.Normal(0.0, 3.0).log_prob(v) + tfd.Normal(0.0, tf.exp(v / 2.0)).log_prob(x)


TARGETS = {
    "banana": {"log_prob": banana_log_prob, "log_z": 0.0,
               "formula": "z1 ~ N(0, 2^2), z2 | z1 ~ N(0.5 (z1^2 - 4), 1)",
               "axes": ("z1", "z2"), "extent": (-6.0, 6.0, -5.0, 12.0)},
    "funnel": {"log_prob": funnel_log_prob, "log_z": 0.0,
               "formula": "v = z1 ~ N(0, 3^2), x = z2 | v ~ N(0, exp(v)) (std exp(v/2))",
               "axes": ("v", "x"), "extent": (-8.0, 8.0, -12.0, 12.0)},
}


def normaliser_check(name: str) -> float:
    """log of the target's integral on a fine grid (should be ~0 for a normalised density).

    The funnel is integrated over u = x exp(-v/2) (dx = exp(v/2) du), which keeps its narrow
    neck resolved on a regular grid.
    """
    log_prob = TARGETS[name]["log_prob"]
    if name == "banana":
        z1, z2 = np.linspace(-16, 16, 1601), np.linspace(-20, 80, 2001)
        g1, g2 = np.meshgrid(z1, z2, indexing="ij")
        log_jac = np.zeros_like(g1)
    else:
        z1, u = np.linspace(-30, 30, 1501), np.linspace(-12, 12, 1201)
        g1, gu = np.meshgrid(z1, u, indexing="ij")
        g2, log_jac = gu * np.exp(g1 / 2), g1 / 2
    z = tf.constant(np.stack([g1, g2], -1), tf.float32)
    density = np.exp(log_prob(z).numpy().astype(np.float64) + log_jac)
    cell = (z1[1] - z1[0]) * ((z2[1] - z2[0]) if name == "banana" else (u[1] - u[0]))
    return float(np.log(density.sum() * cell))


# --------------------------------------------------------------------------------- posteriors

def build_posterior(kind: str, args):
    """(q, trainable variables, number of parameters); q starts at N(0, I) in every case."""
    keras.utils.set_random_seed(args.seed)  # the same initial weights for every target
    if kind == "mean_field":
        loc = tf.Variable(tf.zeros(2), name="loc")
        scale = tfp.util.TransformedVariable(tf.ones(2), tfb.Softplus(), name="scale")
        q = tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=1)
    else:
        q = flow_model(kind, args).distribution
    variables = q.trainable_variables
    return q, variables, int(sum(np.prod(v.shape) for v in variables))


def flow_model(kind: str, args) -> tfp_flows.FlowModel:
    """The flow posterior `kind` over z in R^2."""
    if kind == "iaf_small":
        return tfp_flows.iaf((2,), hidden=args.small_hidden, num_layers=args.small_layers)
    if kind in ("planar", "radial"):
        return tfp_flows.build(kind, (2,), num_layers=getattr(args, f"{kind}_layers"))
    return tfp_flows.build(kind, (2,), hidden=args.hidden, num_layers=args.layers)


def evaluate(q, log_prob, log_z: float, args) -> dict:
    """ELBO with many samples of a fixed seed, KL = log Z - ELBO, IS log Z and ESS."""
    start = time.perf_counter()
    z, log_q = q.experimental_sample_and_log_prob(args.eval_samples, seed=(args.seed, 999))
    log_w = (log_prob(z) - log_q).numpy().astype(np.float64)
    sample_seconds = time.perf_counter() - start
    n = len(log_w)
    elbo, se = float(np.mean(log_w)), float(np.std(log_w) / math.sqrt(n))
    top = np.max(log_w)
    log_mean_w = float(top + np.log(np.mean(np.exp(log_w - top))))
    ess = float(np.exp(2 * np.log(np.sum(np.exp(log_w - top)))
                       - np.log(np.sum(np.exp(2 * (log_w - top))))) / n)
    # The cached log q(z) of own samples against a fresh evaluation of the density (a new
    # tensor, so no cache): they must agree; the fresh one is the sequential pass for an IAF.
    fresh = tf.constant(z.numpy()[:args.check_samples])
    start = time.perf_counter()
    log_q_fresh = q.log_prob(fresh).numpy()
    fresh_seconds = time.perf_counter() - start
    return {"elbo": round(elbo, 4), "elbo_standard_error": round(se, 4),
            "kl_q_p": round(log_z - elbo, 4),
            "importance_sampled_log_z": round(log_mean_w, 4),
            "importance_ess_fraction": round(ess, 4),
            "max_abs_cached_vs_fresh_log_q": float(np.max(np.abs(
                log_q.numpy()[:args.check_samples] - log_q_fresh))),
            "sample_and_log_prob_seconds": round(sample_seconds, 3),
            "fresh_log_prob_seconds": round(fresh_seconds, 3),
            "eval_samples": n}


def fit(q, variables, log_prob, args, seed: int) -> dict:
    start = time.perf_counter()
    losses, stamps = tfp.vi.fit_surrogate_posterior(
        log_prob, q, optimizer=keras.optimizers.Adam(args.learning_rate),
        num_steps=args.steps, sample_size=args.sample_size, seed=(args.seed, seed),
        trainable_variables=variables, trace_fn=lambda t: (t.loss, tf.timestamp()))
    losses = losses.numpy()
    wall = time.perf_counter() - start
    return {"elbo_curve": [round(-float(v), 4) for v in losses],
            "fit_wall_seconds": round(wall, 1),
            "ms_per_step": round(1e3 * float(np.median(np.diff(stamps.numpy()))), 2),
            "nonfinite_losses": int((~np.isfinite(losses)).sum())}


# ------------------------------------------------------------------------------------ figures

def smooth(values, width: int) -> np.ndarray:
    values = np.asarray(values, np.float64)
    width = max(1, min(width, len(values)))
    return np.convolve(values, np.ones(width) / width, mode="valid")


def grid_log_prob(log_prob, extent, size: int):
    x = np.linspace(extent[0], extent[1], size)
    y = np.linspace(extent[2], extent[3], size)
    gx, gy = np.meshgrid(x, y)
    z = tf.constant(np.stack([gx, gy], -1).reshape(-1, 2), tf.float32)
    return log_prob(z).numpy().reshape(size, size)


def figure(results, posteriors, args):
    names = list(TARGETS)
    fig, axes = plt.subplots(len(names), 2 + len(POSTERIORS),
                             figsize=(3.1 * (2 + len(POSTERIORS)), 3.0 * len(names)))
    for row, name in enumerate(names):
        target = TARGETS[name]
        ax = axes[row, 0]
        width = max(1, args.steps // 60)
        lows = []
        for kind in POSTERIORS:
            curve = smooth(results[name][kind]["elbo_curve"], width)
            steps = np.arange(len(curve)) + width
            ax.plot(steps, curve, color=COLORS[kind], label=LABELS[kind], lw=1.2)
            lows.append(np.min(curve[len(curve) // 10:]) if len(curve) > 10 else np.min(curve))
        ax.axhline(target["log_z"], color="k", ls=":", lw=1, label="log Z")
        ax.set_ylim(min(lows) - 0.2, target["log_z"] + 0.15)
        ax.set_xlabel("step")
        ax.set_ylabel(f"ELBO (moving mean of {width})")
        ax.set_title(f"{name}: ELBO during fit", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)

        extent = target["extent"]
        log_p = grid_log_prob(target["log_prob"], extent, args.grid)
        top = float(np.max(log_p))
        panels = [("target p", log_p)] + [
            (f"{LABELS[kind]} q (KL {results[name][kind]['eval']['kl_q_p']:.3f})",
             grid_log_prob(posteriors[name][kind].log_prob, extent, args.grid))
            for kind in POSTERIORS]
        for col, (title, values) in enumerate(panels, start=1):
            ax = axes[row, col]
            ax.imshow(np.exp(np.clip(values, top - 12, None) - top), origin="lower",
                      extent=extent, aspect="auto", cmap="viridis", vmin=0,
                      vmax=1 if name == "banana" else 0.25, interpolation="bilinear")
            ax.contour(np.linspace(*extent[:2], args.grid), np.linspace(*extent[2:], args.grid),
                       values, levels=top - np.array([8.0, 5.0, 3.0, 1.5, 0.5]),
                       colors="w", linewidths=0.5)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(target["axes"][0])
            ax.set_ylabel(target["axes"][1])
    fig.suptitle("Variational posteriors via tfp.vi.fit_surrogate_posterior "
                 f"({args.steps} steps, {args.sample_size} samples/step, Adam "
                 f"{args.learning_rate}); density shown as p/max p, contours at log p - "
                 "log max p = -0.5, -1.5, -3, -5, -8", fontsize=9)
    fig.tight_layout()
    return fig


def markdown_table(results) -> str:
    lines = ["| target | posterior | params | ELBO (+- s.e.) | KL(q‖p) = log Z - ELBO "
             "| IS log Z | IS ESS | ms / step | fit wall (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in TARGETS:
        for kind in POSTERIORS:
            r = results[name][kind]
            e = r["eval"]
            lines.append(f"| {name} | {LABELS[kind]} | {r['parameters']} | {e['elbo']:.4f} +- "
                         f"{e['elbo_standard_error']:.4f} | {e['kl_q_p']:.4f} "
                         f"| {e['importance_sampled_log_z']:.4f} "
                         f"| {e['importance_ess_fraction']:.3f} | {r['ms_per_step']:.1f} "
                         f"| {r['fit_wall_seconds']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="few steps, a smoke test (writes to $TMPDIR/tfp_flows_quick)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--sample_size", type=int, default=256, help="samples per ELBO step")
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--layers", type=int, default=4, help="autoregressive layers")
    parser.add_argument("--hidden", type=int, default=64, help="MADE hidden units")
    parser.add_argument("--small_layers", type=int, default=1,
                        help="autoregressive layers of the small IAF")
    parser.add_argument("--small_hidden", type=int, default=4,
                        help="MADE hidden units of the small IAF")
    parser.add_argument("--eval_samples", type=int, default=100_000)
    parser.add_argument("--check_samples", type=int, default=2000,
                        help="samples whose log q is recomputed without the cache")
    parser.add_argument("--grid", type=int, default=150, help="figure grid points per axis")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.eval_samples, args.hidden, args.layers, args.grid = 40, 2000, 16, 2, 40
    # Planar and radial at the small IAF's parameter count: a layer has 2D + 1 and D + 2.
    small = sum(int(np.prod(v.shape)) for v in flow_model("iaf_small", args).trainable_variables)
    args.planar_layers, args.radial_layers = round(small / 5), round(small / 4)
    start = time.perf_counter()
    machine = common.machine()
    results, posteriors = {}, {}
    for t, (name, target) in enumerate(TARGETS.items()):
        results[name], posteriors[name] = {}, {}
        for kind in POSTERIORS:
            q, variables, parameters = build_posterior(kind, args)
            record = {"parameters": parameters, "trainable_variables": len(variables)}
            record.update(fit(q, variables, target["log_prob"], args, seed=t))
            record["eval"] = evaluate(q, target["log_prob"], target["log_z"], args)
            results[name][kind], posteriors[name][kind] = record, q
            print(f"{name} {kind}: ELBO {record['eval']['elbo']:.4f}, KL "
                  f"{record['eval']['kl_q_p']:.4f}, {record['ms_per_step']:.1f} ms/step, "
                  f"fit {record['fit_wall_seconds']:.1f} s", flush=True)
    for name in TARGETS:
        results[name]["maf_over_iaf_time_per_step"] = round(
            results[name]["maf"]["ms_per_step"] / results[name]["iaf"]["ms_per_step"], 2)
    table = markdown_table(results)
    print(table)
    record = {
        "experiment": "vi_posterior",
        "command": "python experiments/vi_posterior.py" + (" --quick" if args.quick else ""),
        "machine": machine, "settings": vars(args),
        "optimizer": f"keras.optimizers.Adam(learning_rate={args.learning_rate}) (Keras 3), "
                     "a fresh one per fit, on the tf.Variables of q.trainable_variables",
        "targets": {name: {"formula": t["formula"], "log_z": t["log_z"],
                           "normaliser_check_log_integral": round(normaliser_check(name), 5) + 0.0}
                    for name, t in TARGETS.items()},
        "posteriors": {"mean_field": "tfd.Independent(tfd.Normal(loc, softplus(s))), loc = 0, "
                                     "scale = 1 at start",
                       "iaf": f"tfp_flows.iaf((2,), hidden={args.hidden}, "
                              f"num_layers={args.layers}).distribution (default "
                              f"scale_fn='soft_clamp')",
                       "maf": f"tfp_flows.maf((2,), hidden={args.hidden}, "
                              f"num_layers={args.layers}).distribution (default "
                              f"scale_fn='soft_clamp')",
                       "iaf_small": f"tfp_flows.iaf((2,), hidden={args.small_hidden}, "
                                    f"num_layers={args.small_layers}).distribution",
                       "planar": f"tfp_flows.planar((2,), num_layers={args.planar_layers})"
                                 f".distribution",
                       "radial": f"tfp_flows.radial((2,), num_layers={args.radial_layers})"
                                 f".distribution"},
        "notes": "ELBO, KL, IS log Z (log mean of the importance weights) and ESS (fraction of "
                 "eval_samples) from eval_samples draws of q with seed (seed, 999); "
                 "elbo_curve is -loss of every step (sample_size draws); ms_per_step is the "
                 "median interval between steps' tf.timestamp() inside TFP's loop, "
                 "fit_wall_seconds includes tracing; max_abs_cached_vs_fresh_log_q compares "
                 "log q of own samples (bijector cache) with a fresh log_prob of the same "
                 "points.",
        "results": results, "table_markdown": table,
    }
    record["figure"] = common.save_figure(figure(results, posteriors, args), "vi_posterior.png",
                                          args.quick)
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    common.write_json("vi_posterior.json", record, args.quick)
    print(f"wall {record['wall_seconds']} s")


if __name__ == "__main__":
    main()
