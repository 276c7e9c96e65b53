"""MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1 trains like one process."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import multi_worker_job as job
import numpy as np
import pytest
import synthetic_tfds

from tfp_flows import datasets

# Both workers together; a hung collective must fail the test, not block CI.
TIMEOUT_S = 150


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_workers(workdir: Path) -> None:
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                        "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(
            [sys.executable, job.__file__, str(workdir)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for index, process in enumerate(processes):
            output, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert process.returncode == 0, f"worker {index} failed:\n{output[-3000:]}"
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Where the two workers, started once for both tests, wrote what they trained and read."""
    path = tmp_path_factory.mktemp("multi_worker")
    keras.utils.set_random_seed(0)
    np.savez(path / "init.npz", *job.build_model().get_weights())
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 17, size=(4 * job.GLOBAL_BATCH, *job.EVENT_SHAPE))
         + rng.random((4 * job.GLOBAL_BATCH, *job.EVENT_SHAPE))).astype("float32")
    np.save(path / "data.npy", x)
    synthetic_tfds.prepare(str(path))
    _run_workers(path)
    return path


def _load_weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def test_two_workers_train_like_one_process(workdir):
    reference = job.build_model()
    reference.set_weights(_load_weights(workdir / "init.npz"))
    reference.compile(keras.optimizers.SGD(job.LEARNING_RATE))
    reference.fit(job.make_dataset(np.load(workdir / "data.npy")), epochs=1, shuffle=False,
                  verbose=0)
    expected = reference.get_weights()
    # The couplings' output layers start at zero: only training moves them.
    trained = [np.max(np.abs(w)) for v, w in zip(reference.weights, expected, strict=True)
               if "zero_conv" in v.path]
    assert trained and min(trained) > 1e-3
    for index in range(2):
        weights = _load_weights(workdir / f"weights_{index}.npz")
        for variable, got, want in zip(reference.weights, weights, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6,
                                       err_msg=f"worker {index}: {variable.path}")


def test_two_workers_read_disjoint_shards_of_a_streamed_dataset(workdir):
    ids = [json.loads((workdir / f"ids_{index}.json").read_text()) for index in range(2)]
    # Each worker reads 3 batches of 6, its half of each global batch of 12.
    assert [len(i) for i in ids] == [18, 18]
    validation = datasets.load("synthetic_images", data_dir=str(workdir),
                               batch_size=job.STREAMED_BATCH).validation
    pixels = np.floor(np.concatenate([batch.numpy() for batch in validation])).astype(int)
    held_out = set(pixels[:, 0, 0, 0] * 256 + pixels[:, 0, 0, 1])
    assert not set(ids[0]) & set(ids[1])
    assert set(ids[0]) | set(ids[1]) == set(range(40)) - held_out
