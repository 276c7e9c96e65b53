"""The final evaluation of a run: NLL and bits/dim per split, and what those numbers are."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfp_flows import inputs
from tfp_flows.flow_model import FlowModel

__all__ = ["IMPORTANCE_SAMPLES", "SPLITS", "estimate", "evaluator"]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
"""The splits a run is evaluated on, in order."""
IMPORTANCE_SAMPLES = 8
"""K of the importance-weighted estimate reported on the test split for a model with a
learned dequantizer: K times the cost of the bound, a tighter number."""


def estimate(model: FlowModel, num_levels: int | None) -> str:
    """What the NLL and bits/dim of `evaluator` are for `model` (whose data has `num_levels`
    pixel levels, or None for continuous data), in words for metrics.json."""
    if model.dequantizer is not None:
        return ("the variational bound: -log p(x + u) + log q(u | x) with one sample u ~ "
                "q(u | x) per image from the learned dequantizer (seeded), a stochastic upper "
                "bound on -log P(x) of the discrete pixels")
    if num_levels is not None:
        return ("the uniform-dequantization bound: -log p(x + u) with the data pipeline's "
                "uniform noise u, an upper bound (in expectation) on -log P(x) of the discrete "
                "pixels")
    return "the exact negative log-likelihood of the continuous data"


def evaluator(model: FlowModel, strategy: tf.distribute.Strategy, seed: int):
    """`evaluate(dataset, split, num_samples=1)`: mean NLL (nats) and bits/dim over all the
    examples of `dataset`, the split `split` (one of `SPLITS`).

    Sums run on every replica (and worker) and are all-reduced, so a partial last batch and
    a multi-worker split of the data are counted exactly. One traced function serves all
    splits. A model with a learned dequantizer is scored by its importance-weighted estimate
    with K = `num_samples` (K = 1: the variational bound, as it trains), its noise a function
    of `seed`, the split, K, the batch's number and the replica, so a rerun (a resumed run)
    gets the same numbers; other models by their `log_prob` (K must be 1).
    """
    weighted = model.computations().get("importance_weighted_log_prob")

    def replica_sums(batch_seed, num_samples, x, context=None):
        if weighted is None:
            log_prob = model.log_prob(x, context)
        else:
            x, context = inputs.check_inputs(model.flow, x, context, "evaluate")
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            log_prob = weighted(x, num_samples, batch_seed + tf.cast(replica, tf.int64),
                                context)
        return -tf.reduce_sum(log_prob), tf.cast(tf.size(log_prob), tf.float32)

    @tf.function(reduce_retracing=True)
    def batch_sums(batch, batch_seed, num_samples):
        # A batch is x, or (x, label) for a conditional model.
        total, count = strategy.run(replica_sums, args=(
            batch_seed, num_samples, *(batch if isinstance(batch, tuple) else (batch,))))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, total, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))

    def evaluate(dataset: tf.data.Dataset, split: str, num_samples: int = 1) -> dict:
        if weighted is None and num_samples != 1:
            raise ValueError(f"an importance-weighted estimate (num_samples={num_samples}) "
                             f"needs a model with a learned dequantizer")
        total, count = 0.0, 0.0
        for index, batch in enumerate(strategy.experimental_distribute_dataset(dataset)):
            batch_seed = np.random.SeedSequence(
                seed, spawn_key=(SPLITS.index(split), num_samples, index)).generate_state(
                1, np.uint64).view(np.int64)[0]
            batch_total, batch_count = batch_sums(batch, tf.constant(batch_seed),
                                                  tf.constant(num_samples, tf.int32))
            total += float(batch_total)
            count += float(batch_count)
        nll = total / count
        return {"nll_nats": nll, "bits_per_dim": float(model.bits_per_dim(-nll))}

    return evaluate
