"""The distribution strategy a run trains under, and how its datasets are shared out."""

from __future__ import annotations

import tensorflow as tf

__all__ = ["is_multi_worker", "make_strategy", "shared_by_batch"]


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy called `name`, one of `tfp_flows.training.config.STRATEGIES`."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        # The cluster comes from TF_CONFIG; without it this is a one-worker cluster.
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    # NCCL is GPU-only, and collective all-reduce on CPU breaks when a process makes a second
    # strategy; reducing on one device works on any number of logical CPUs.
    return tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")],
        cross_device_ops=tf.distribute.ReductionToOneDevice())


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several workers, each reading its own share of the data."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def shared_by_batch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset`, split between the workers of a multi-worker run batch by batch."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
