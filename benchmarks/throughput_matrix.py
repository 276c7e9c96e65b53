"""Our Glow's throughput on this machine's device: XLA off / on x float32 / low precision.

`--device gpu` (or `--matrix` on any device) of benchmarks/bench.py runs this instead of the
comparison with TFP: our Glow at the paper's CIFAR-10 size on a GPU.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

import tfp_flows
from benchmarks import synthetic


def throughput_matrix(cfg) -> dict:
    """Our Glow's images/s through `fit` and `model.sample` for XLA off / on x float32 /
    `cfg.low_precision`.

    One model per cell, built with the cell's `precision=` (bfloat16 or float16: conditioner
    networks in 16-bit floats, variables and log-dets in float32; under float16 `compile`
    adds dynamic loss scaling). Training: epochs of `--fit-steps` steps of `fit` from memory,
    after two untimed steps that trace (and compile with XLA). Sampling: `model.sample`
    of a batch inside a `tf.function` with the cell's `jit_compile`. Peak memory: the device
    allocator's peak over the timed epochs, weights included (GPU only: on CPU TF keeps no
    statistics under its default allocator).
    """
    rng = np.random.default_rng(0)
    batch = cfg.glow_batch
    pixels = synthetic.blob_images(8 * batch, cfg.glow_shape, rng)
    x = pixels.astype(np.float32) + rng.uniform(size=pixels.shape).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices(x).batch(batch, drop_remainder=True).cache()
    rows = {}
    for precision in ("float32", cfg.low_precision):
        for jit in (False, True):
            row = _throughput(x[:batch], data.repeat(), jit, precision, cfg)
            rows[f"{precision}, XLA {'on' if jit else 'off'}"] = row
            print(f"[matrix] {precision}, XLA {'on' if jit else 'off'}: "
                  f"train {row['train_images_s']:,.0f} images/s, sample "
                  f"{row['sample_images_s']:,.0f} images/s, loss {row['final_loss']:.1f}",
                  flush=True)
    return rows


def _throughput(first_batch: np.ndarray, data: tf.data.Dataset, jit: bool, precision: str,
                cfg) -> dict:
    keras.utils.set_random_seed(0)
    model = tfp_flows.glow(cfg.glow_shape, num_scales=cfg.glow_levels, depth=cfg.glow_depth,
                           hidden=cfg.glow_hidden, num_levels=256, precision=precision)
    model.initialize_from_data(first_batch)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), jit_compile=jit)

    def epoch(steps: int) -> tuple[float, float]:
        start = time.perf_counter()
        history = model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        return time.perf_counter() - start, history.history["loss"][-1]

    epoch(2)
    gpu = bool(tf.config.list_logical_devices("GPU"))
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    times, losses = zip(*(epoch(cfg.fit_steps) for _ in range(cfg.fit_rounds)), strict=True)
    peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if gpu else None
    sample = tf.function(lambda: model.sample(cfg.glow_batch, seed=1), jit_compile=jit)
    samples = sample().numpy()
    sample_times = []
    for _ in range(5):
        start = time.perf_counter()
        sample().numpy()
        sample_times.append(time.perf_counter() - start)
    return {"train_images_s": cfg.fit_steps * cfg.glow_batch / float(np.median(times)),
            "sample_images_s": cfg.glow_batch / float(np.median(sample_times)),
            "peak_mib": peak, "final_loss": float(losses[-1]),
            "finite_samples": float(np.isfinite(samples).all(axis=(1, 2, 3)).mean())}
