"""NeuTra HMC on Neal's funnel: an IAF fitted by tfp.vi as the transport map of HMC.

    python experiments/neutra_funnel.py           # a few CPU-minutes
    python experiments/neutra_funnel.py --quick   # a smoke test (writes to $TMPDIR/tfp_flows_quick)

Neal's funnel in 1 + `num_x` dimensions: v ~ N(0, 3^2), x_i | v ~ N(0, exp(v)) (standard
deviation exp(v / 2)), i = 1..num_x. Its neck (v << 0) is narrow and its mouth (v >> 0) wide,
so no single HMC step size suits both: plain HMC barely moves in v.

NeuTra (Hoffman et al. 2019, https://arxiv.org/abs/1903.03704): fit a flow q = f(N(0, I)) to
the target by variational inference, then run HMC in the flow's latent space, on the pulled-back
density p(f(z)) |det J_f(z)|, which is near N(0, I) where q fits well. TFP does the pull-back:
`tfp.mcmc.TransformedTransitionKernel(hmc, bijector=f)`, whose states are in the target's
space. An IAF suits it: f (latent -> data) is its one-pass direction, and one HMC leapfrog step
takes one forward pass and its gradient.

Both samplers: `chains` chains of HMC with `leapfrog_steps` leapfrog steps per draw,
`burnin` draws with dual-averaging step-size adaptation (target acceptance 0.75), then
`draws` kept draws, from the same seeds. The chains start from draws of q (NeuTra) and from
N(0, I) (plain HMC). The score is the effective sample size (`tfp.mcmc.effective_sample_size`
across the chains) of v and of each x_i, per gradient evaluation of the target's log-density
over the kept draws (chains x draws x leapfrog steps), with the autocorrelations summed up to
Geyer's initial positive sequence (`filter_beyond_positive_pairs=True`, as Stan does). The
fit's own gradient evaluations (VI steps x sample size) and the burn-in's are reported beside
it, so the whole cost can be compared too.

Writes experiments/results/neutra_funnel.json; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time

import common
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_flows

tfd = tfp.distributions


def funnel(num_x: int) -> tfd.Distribution:
    """Neal's funnel over (v, x_1..x_num_x): v ~ N(0, 3^2), x_i | v ~ N(0, exp(v))."""
    return tfd.JointDistributionSequential([
        tfd.Normal(0.0, 3.0),
        lambda v: tfd.Sample(tfd.Normal(0.0, tf.exp(v / 2.0)), num_x),
    ])


def target_log_prob_fn(num_x: int):
    """log p(y) of y = (v, x_1..x_num_x) as one vector (the last axis), normalised."""
    joint = funnel(num_x)
    return lambda y: joint.log_prob([y[..., 0], y[..., 1:]])


def fit_iaf(args) -> tuple[tfp_flows.FlowModel, dict]:
    """An IAF over 1 + num_x dimensions fitted to the funnel by `tfp.vi`; its record."""
    keras.utils.set_random_seed(args.seed)
    model = tfp_flows.iaf((1 + args.num_x,), hidden=args.hidden, num_layers=args.layers)
    q = model.distribution
    target = target_log_prob_fn(args.num_x)
    start = time.perf_counter()
    losses = tfp.vi.fit_surrogate_posterior(
        target, q, keras.optimizers.Adam(args.learning_rate), args.vi_steps,
        sample_size=args.vi_sample_size, trainable_variables=q.trainable_variables,
        seed=(args.seed, 1))
    seconds = time.perf_counter() - start
    # log Z = 0, so KL(q || p) = -ELBO; estimated here with fresh samples of a fixed seed.
    z, log_q = q.experimental_sample_and_log_prob(args.eval_samples, seed=args.seed + 1)
    log_ratio = (target(z) - log_q).numpy().astype(np.float64)
    return model, {
        "vi_steps": args.vi_steps, "vi_sample_size": args.vi_sample_size,
        "learning_rate": args.learning_rate, "hidden": args.hidden, "layers": args.layers,
        "num_parameters": int(sum(math.prod(v.shape) for v in model.trainable_variables)),
        "final_loss": float(np.mean(losses.numpy()[-100:])),
        "kl_q_p_nats": float(-log_ratio.mean()),
        "kl_standard_error": float(log_ratio.std() / math.sqrt(len(log_ratio))),
        "gradient_evaluations": args.vi_steps * args.vi_sample_size,
        "seconds": seconds,
    }


def run_hmc(name: str, initial_state: tf.Tensor, bijector, args) -> dict:
    """HMC (in the latent space of `bijector` when one is given) and its ESS per gradient."""
    target = target_log_prob_fn(args.num_x)
    kernel = tfp.mcmc.HamiltonianMonteCarlo(target, step_size=args.initial_step_size,
                                            num_leapfrog_steps=args.leapfrog_steps)
    if bijector is not None:
        kernel = tfp.mcmc.TransformedTransitionKernel(kernel, bijector)
    kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(
        kernel, num_adaptation_steps=int(0.8 * args.burnin), target_accept_prob=0.75)

    def trace(_, results):
        inner = results.inner_results
        hmc = inner.inner_results if bijector is not None else inner
        return hmc.is_accepted, results.new_step_size

    @tf.function(autograph=False)
    def sample():
        return tfp.mcmc.sample_chain(args.draws, initial_state, kernel=kernel,
                                     num_burnin_steps=args.burnin, trace_fn=trace,
                                     seed=args.seed + 2)

    start = time.perf_counter()
    states, (accepted, step_size) = sample()
    seconds = time.perf_counter() - start
    # ESS across the chains (axis 1), per coordinate: v, then the x's; the autocorrelations
    # summed up to Geyer's initial positive sequence (as Stan does), so that an antithetic
    # chain (a negative lag-1 autocorrelation) can show more than one effective draw per draw.
    ess = tfp.mcmc.effective_sample_size(states, cross_chain_dims=1,
                                         filter_beyond_positive_pairs=True).numpy()
    gradients = args.chains * args.draws * args.leapfrog_steps
    y = states.numpy()
    return {
        "sampler": name,
        "final_step_size": float(np.mean(step_size.numpy()[-1])),
        "acceptance_rate": float(np.mean(accepted.numpy())),
        "ess_v": float(ess[0]),
        "ess_x_min": float(ess[1:].min()), "ess_x_mean": float(ess[1:].mean()),
        "gradient_evaluations": gradients,
        "burnin_gradient_evaluations": args.chains * args.burnin * args.leapfrog_steps,
        "ess_v_per_1000_gradients": 1000 * float(ess[0]) / gradients,
        "ess_x_min_per_1000_gradients": 1000 * float(ess[1:].min()) / gradients,
        "mean_v": float(y[..., 0].mean()), "std_v": float(y[..., 0].std()),
        "min_v": float(y[..., 0].min()),
        "seconds": seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--num_x", type=int, default=9)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--vi_steps", type=int, default=2000)
    parser.add_argument("--vi_sample_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--eval_samples", type=int, default=10000)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--burnin", type=int, default=500)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--leapfrog_steps", type=int, default=4)
    parser.add_argument("--initial_step_size", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.vi_steps, args.burnin, args.draws, args.eval_samples = 50, 20, 30, 200
    start = time.perf_counter()

    model, vi = fit_iaf(args)
    dim = 1 + args.num_x
    neutra_start = model.distribution.sample(args.chains, seed=args.seed + 3)
    plain_start = tf.random.stateless_normal([args.chains, dim], seed=[args.seed, 3])
    samplers = [run_hmc("hmc", plain_start, None, args),
                run_hmc("neutra_hmc", neutra_start, model.bijector, args)]
    plain, neutra = samplers
    # The whole cost: the kept draws, the burn-in and, for NeuTra, the fit.
    for sampler, fit in ((plain, 0), (neutra, vi["gradient_evaluations"])):
        total = sampler["gradient_evaluations"] + sampler["burnin_gradient_evaluations"] + fit
        sampler["total_gradient_evaluations"] = total
        sampler["ess_v_per_1000_total_gradients"] = 1000 * sampler["ess_v"] / total
    record = {
        "experiment": "NeuTra HMC (IAF fitted by tfp.vi) vs plain HMC on Neal's funnel",
        "target": f"v ~ N(0, 3^2), x_i | v ~ N(0, exp(v)), i = 1..{args.num_x}",
        "dimension": dim,
        "true_mean_v": 0.0, "true_std_v": 3.0,
        "chains": args.chains, "burnin": args.burnin, "draws": args.draws,
        "leapfrog_steps": args.leapfrog_steps, "initial_step_size": args.initial_step_size,
        "step_size_adaptation": "dual averaging over the first 80% of burn-in, target "
                                "acceptance 0.75",
        "seed": args.seed,
        "vi": vi,
        "samplers": samplers,
        "ess_v_ratio": neutra["ess_v"] / plain["ess_v"],
        "ess_x_min_ratio": neutra["ess_x_min"] / plain["ess_x_min"],
        "wall_time_s": time.perf_counter() - start,
        "machine": common.machine(),
    }
    out_dir = (os.path.join(tempfile.gettempdir(), "tfp_flows_quick") if args.quick
               else str(common.RESULTS_DIR))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "neutra_funnel.json")
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    print(f"IAF fit: KL(q || p) = {vi['kl_q_p_nats']:.3f} nats, "
          f"{vi['gradient_evaluations']} gradient evaluations, {vi['seconds']:.0f} s")
    print("| sampler | step size | accept | ESS v | ESS x (min) | ESS v / 1000 grads "
          "| ESS x (min) / 1000 grads | std v (true 3) |")
    print("|---|---|---|---|---|---|---|---|")
    for s in samplers:
        print(f"| {s['sampler']} | {s['final_step_size']:.3f} | {s['acceptance_rate']:.2f} "
              f"| {s['ess_v']:.0f} | {s['ess_x_min']:.0f} | {s['ess_v_per_1000_gradients']:.1f} "
              f"| {s['ess_x_min_per_1000_gradients']:.1f} | {s['std_v']:.2f} |")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
