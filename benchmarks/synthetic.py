"""The benchmark's synthetic data, generated here so that no download is needed.

Images of soft coloured blobs (uint8, dequantized by `tfp_flows.datasets`) and vectors from a
16-dimensional Gaussian mixture passed through a fixed nonlinear map.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from tfp_flows import datasets


def blob_images(n: int, shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """uint8 images of 1-3 soft blobs of random colour on a random flat background."""
    height, width, channels = shape
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    images = np.empty((n, height, width, channels), np.float32)
    images[:] = rng.uniform(0, 80, (n, 1, 1, channels))
    for _ in range(3):
        present = rng.uniform(size=(n, 1, 1, 1)) < 0.8
        centre = rng.uniform(0, 1, (n, 2)) * [height, width]
        radius = rng.uniform(0.1, 0.35, (n, 1, 1)) * height
        dist2 = ((rows - centre[:, :1, None]) ** 2 + (cols - centre[:, 1:, None]) ** 2)
        blob = np.exp(-dist2 / (2 * radius ** 2))[..., None]
        images += present * blob * rng.uniform(40, 175, (n, 1, 1, channels))
    return np.clip(images, 0, 255).astype(np.uint8)


def mixture_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Standardised samples of a Gaussian mixture bent by a fixed smooth map."""
    params = np.random.default_rng(1234)
    means = params.normal(0, 2.0, (8, dim))
    mixing = params.normal(0, 1.0 / np.sqrt(dim), (dim, dim))
    z = means[rng.integers(0, 8, n)] + rng.normal(0, 0.5, (n, dim))
    x = z + np.sin(z @ mixing)
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


def make_data(flow: str, cfg: argparse.Namespace, directory: str) -> datasets.Splits:
    """The library's train/validation/test pipelines over synthetic data for `flow`."""
    rng = np.random.default_rng(0)
    num = cfg.examples
    if flow == "glow":
        x = blob_images(num + cfg.eval_examples, cfg.glow_shape, rng)
        batch = cfg.glow_batch
    else:
        x = mixture_vectors(num + cfg.eval_examples, cfg.dim, rng)
        batch = cfg.vector_batch
    path = os.path.join(directory, f"{flow}.npz")
    np.savez(path, x_train=x[:num], x_test=x[num:])
    return datasets.load(path, batch_size=batch, seed=0)


