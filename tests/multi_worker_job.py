"""One worker of the two-process MultiWorkerMirroredStrategy tests (tests/test_multi_worker.py).

Run as `python tests/multi_worker_job.py WORKDIR` with TF_CONFIG naming this worker. Under one
strategy (a process can hold only one) the worker does two jobs, so that the tests start the
two processes once:

- trains: reads the initial weights (`init.npz`) and the training data (`data.npy`) from
  WORKDIR, trains a small Glow with `fit` under the strategy (ActNorm's initialisation
  all-reduced across the workers) and writes its final weights to `weights_<index>.npz`;
- streams the TFDS dataset 'synthetic_images' prepared in WORKDIR: writes the example ids of
  the training batches it reads in one epoch to `ids_<index>.json`, reading them as the
  training command does under this strategy (`distribute_datasets_from_function`).
"""

import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

import tfp_flows
from tfp_flows import datasets

EVENT_SHAPE = (4, 4, 1)
GLOBAL_BATCH = 16
LEARNING_RATE = 1e-2
# 36 training examples of 'synthetic_images': three global batches of 12, none left over.
STREAMED_BATCH = 12


def build_model():
    """The model both this job and the test's one-process reference train."""
    return tfp_flows.glow(EVENT_SHAPE, num_scales=1, depth=1, hidden=8, num_levels=17)


def make_dataset(x: np.ndarray):
    """Global batches in a fixed order; the strategy splits each between the workers."""
    options = tf.data.Options()
    # DATA sharding splits every global batch between the workers, so one step of the two
    # workers together sees exactly the batch the one-process run sees.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices(x).batch(GLOBAL_BATCH).with_options(options)


def main(workdir: str) -> None:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    train(strategy, workdir, index)
    streamed(strategy, workdir, index)


def train(strategy, workdir: str, index: int) -> None:
    init = np.load(os.path.join(workdir, "init.npz"))
    x = np.load(os.path.join(workdir, "data.npy"))
    with strategy.scope():
        model = build_model()
        model.set_weights([init[f"arr_{i}"] for i in range(len(init.files))])
        model.compile(keras.optimizers.SGD(LEARNING_RATE))
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    model.fit(make_dataset(x), epochs=1, shuffle=False, verbose=0)
    np.savez(os.path.join(workdir, f"weights_{index}.npz"), *model.get_weights())


def streamed(strategy, workdir: str, index: int) -> None:
    splits = datasets.load("synthetic_images", data_dir=workdir, batch_size=STREAMED_BATCH)
    batches = strategy.distribute_datasets_from_function(
        lambda context: splits.streamed.train_batches(0, 1, input_context=context))
    ids = []
    for batch in batches:
        for x in strategy.experimental_local_results(batch):
            # tests/synthetic_tfds.py spells the id in the first pixel's red and green values.
            pixels = np.floor(x.numpy()).astype(np.int64)
            ids += (pixels[:, 0, 0, 0] * 256 + pixels[:, 0, 0, 1]).tolist()
    with open(os.path.join(workdir, f"ids_{index}.json"), "w") as f:
        json.dump(ids, f)


if __name__ == "__main__":
    main(sys.argv[1])
