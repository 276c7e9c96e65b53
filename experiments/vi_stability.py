"""The `tfp.vi` block of docs/guides/variational-inference.md, run unseeded: does it stay finite?

    python experiments/vi_stability.py           # ~15 min on 2 busy CPUs
    python experiments/vi_stability.py --quick   # a smoke test (writes to $TMPDIR/tfp_flows_quick)

Part 1 runs the guide's variational-inference block at 1,500 steps of 256 samples, no seed
(so every run draws new initial weights and new samples): an IAF of 4 layers with 2 x 64 MADEs
fitted by `tfp.vi.fit_surrogate_posterior` to Neal's funnel, v ~ N(0, 3^2), x | v ~ N(0, e^v)
(variance e^v, standard deviation e^(v/2), as in Neal 2003), 1,500 steps of 256 samples,
Adam 3e-3. It does so `--runs` times with the default scale function of the autoregressive
layers (soft-clamped log-scale) and `--exp_runs` times with the paper's unbounded one
(`scale_fn="exp"`), and records for each run the first step whose loss is not finite, the last
steps' mean loss (-ELBO, which is KL(q || p) here since the funnel is normalised) and whether
`q.log_prob` of two points is finite after the fit.

Part 2 checks what the bound costs MAF as a density estimator: MAF (5 layers, 2 x 64) on two
moons, `--density_steps` Adam steps, both scale functions, three seeds each: test NLL in nats
(the data's entropy is about 2.40) and how many points of a 121 x 121 grid over
[-4.5, 4.5]^2 get a non-finite density.

Writes experiments/results/vi_stability.json.
"""

from __future__ import annotations

import argparse
import time

import common
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_flows
from tfp_flows import datasets

tfd = tfp.distributions

SCALE_FUNCTIONS = ("soft_clamp", "exp")


def funnel_log_prob(z):
    """Neal's funnel: v ~ N(0, 3^2), x | v ~ N(0, e^v) (standard deviation e^(v/2))."""
    v, x = z[..., 0], z[..., 1]
    return tfd.Normal(0.0, 3.0).log_prob(v) + tfd.Normal(0.0, tf.exp(v / 2.0)).log_prob(x)


def vi_run(scale_fn: str, args) -> dict:
    """One unseeded fit of the guide's block (for "soft_clamp" as printed: the default)."""
    start = time.perf_counter()
    options = {} if scale_fn == "soft_clamp" else {"scale_fn": scale_fn}
    q = tfp_flows.iaf((2,), num_layers=4, hidden=64, **options)
    losses = tfp.vi.fit_surrogate_posterior(
        funnel_log_prob, q.distribution, keras.optimizers.Adam(3e-3), num_steps=args.steps,
        sample_size=256, trainable_variables=q.distribution.trainable_variables).numpy()
    bad = np.flatnonzero(~np.isfinite(losses))
    log_q = q.log_prob(tf.constant([[0.5, 0.25], [1.0, -0.5]])).numpy()
    tail = losses[-min(100, len(losses)):]
    return {"first_nonfinite_step": int(bad[0]) if len(bad) else None,
            "nonfinite_losses": int(len(bad)),
            "final_loss_mean_of_last_100": round(float(np.mean(tail)), 4),
            "log_q_of_two_points_finite": bool(np.all(np.isfinite(log_q))),
            "wall_seconds": round(time.perf_counter() - start, 1)}


def density_run(scale_fn: str, seed: int, data: dict, args) -> dict:
    keras.utils.set_random_seed(seed)
    model = tfp_flows.maf((2,), num_layers=5, hidden=64, scale_fn=scale_fn)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x_train = data["x_train"]
    batch = 256
    epochs = max(1, round(args.density_steps * batch / len(x_train)))
    model.fit(x_train, batch_size=batch, epochs=epochs, verbose=0)
    test_nll = float(-np.mean(model.log_prob(data["x_test"]).numpy()))
    axis = np.linspace(-4.5, 4.5, 121, dtype="float32")
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    return {"seed": seed, "steps": epochs * -(-len(x_train) // batch),
            "test_nll": round(test_nll, 4),
            "grid_nonfinite": int((~np.isfinite(model.log_prob(grid).numpy())).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="few runs and steps, a smoke test (writes to a scratch folder)")
    parser.add_argument("--runs", type=int, default=10,
                        help="unseeded VI runs with the default scale function")
    parser.add_argument("--exp_runs", type=int, default=10,
                        help="unseeded VI runs with scale_fn='exp', for contrast")
    parser.add_argument("--steps", type=int, default=1500, help="VI steps (the guide's runs: 1500)")
    parser.add_argument("--density_steps", type=int, default=400)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.exp_runs, args.steps, args.density_steps = 1, 1, 20, 20
    start = time.perf_counter()
    machine = common.machine()
    vi = {}
    for scale_fn in SCALE_FUNCTIONS:
        runs = []
        for run in range(args.runs if scale_fn == "soft_clamp" else args.exp_runs):
            runs.append(vi_run(scale_fn, args))
            print(f"vi {scale_fn} run {run}: {runs[-1]}", flush=True)
        failed = sum(r["first_nonfinite_step"] is not None for r in runs)
        vi[scale_fn] = {"runs": runs, "runs_with_nonfinite_loss": failed,
                        "median_final_loss": round(float(np.median(
                            [r["final_loss_mean_of_last_100"] for r in runs])), 4)}
        print(f"vi {scale_fn}: {failed} of {len(runs)} runs non-finite", flush=True)
    data = datasets.load_arrays("two_moons", seed=0)
    density = {scale_fn: [density_run(scale_fn, seed, data, args) for seed in range(3)]
               for scale_fn in SCALE_FUNCTIONS}
    for scale_fn, runs in density.items():
        print(f"density {scale_fn}: {runs}", flush=True)
    record = {
        "experiment": "vi_stability",
        "command": "python experiments/vi_stability.py" + (" --quick" if args.quick else ""),
        "machine": machine, "settings": vars(args),
        "vi": {"target": "Neal's funnel: v ~ N(0, 3^2), x | v ~ N(0, e^v) (std e^(v/2))",
               "posterior": "tfp_flows.iaf((2,), num_layers=4, hidden=64[, scale_fn='exp'])",
               "fit": f"tfp.vi.fit_surrogate_posterior, Adam(3e-3), {args.steps} steps, "
                      "sample_size=256, no seed",
               **vi},
        "density": {"data": "two moons (tfp_flows.datasets, seed 0), entropy about 2.40 nats",
                    "model": "tfp_flows.maf((2,), num_layers=5, hidden=64, scale_fn=...), "
                             "Adam(1e-3), batch 256",
                    "grid": "121 x 121 points on [-4.5, 4.5]^2",
                    **density},
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    common.write_json("vi_stability.json", record, args.quick)


if __name__ == "__main__":
    main()
