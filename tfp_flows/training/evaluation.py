"""The final evaluation of a run: exact NLL and bits/dim per split."""

from __future__ import annotations

import tensorflow as tf

from tfp_flows.flow_model import FlowModel

__all__ = ["evaluator"]


def evaluator(model: FlowModel, strategy: tf.distribute.Strategy):
    """A function of a dataset: exact mean NLL (nats) and bits/dim over all its examples.

    Sums run on every replica (and worker) and are all-reduced, so a partial last batch and
    a multi-worker split of the data are counted exactly. One traced function serves all
    splits.
    """

    def replica_sums(x, context=None):
        log_prob = model.log_prob(x, context)
        return -tf.reduce_sum(log_prob), tf.cast(tf.size(log_prob), tf.float32)

    @tf.function(reduce_retracing=True)
    def batch_sums(batch):
        # A batch is x, or (x, label) for a conditional model.
        total, count = strategy.run(replica_sums,
                                    args=batch if isinstance(batch, tuple) else (batch,))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, total, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))

    def evaluate(dataset: tf.data.Dataset) -> dict:
        total, count = 0.0, 0.0
        for batch in strategy.experimental_distribute_dataset(dataset):
            batch_total, batch_count = batch_sums(batch)
            total += float(batch_total)
            count += float(batch_count)
        nll = total / count
        return {"nll_nats": nll, "bits_per_dim": float(model.bits_per_dim(-nll))}

    return evaluate
