"""The 2-D toy densities of the RealNVP/FFJORD toy experiments, at FFJORD's scale (roughly
[-4, 4]^2): spec "two_moons", "circles", "eight_gaussians", "checkerboard", "pinwheel" or
"two_spirals". Each sampler draws the mixture component iid per point and returns it as the
label; `num_examples` is the number of points sampled (default 20000), 20% held out as test.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfp_flows.datasets import splits as splits_lib
from tfp_flows.datasets.arrays import Arrays, carve_test
from tfp_flows.datasets.options import LoadOptions
from tfp_flows.datasets.source import ArraySource, register_source

_DEFAULT_EXAMPLES = 20_000


def _two_moons(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    t = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where(y[:, None] == 0, upper, lower) + 0.1 * rng.standard_normal((n, 2))
    return 2.0 * x + np.array([-1.0, -0.2]), y


def _circles(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    t = rng.uniform(0.0, 2.0 * np.pi, n)
    radius = np.where(y == 0, 1.0, 0.5)[:, None]
    x = radius * np.stack([np.cos(t), np.sin(t)], axis=1) + 0.08 * rng.standard_normal((n, 2))
    return 3.0 * x, y


def _eight_gaussians(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 8, n)
    angle = y * (np.pi / 4.0)
    centers = 4.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return (centers + 0.5 * rng.standard_normal((n, 2))) / np.sqrt(2.0), y


def _checkerboard(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x1 = rng.uniform(-2.0, 2.0, n)
    row = rng.integers(0, 2, n)
    column = np.floor(x1)
    x2 = rng.uniform(0.0, 1.0, n) - 2.0 * row + np.mod(column, 2.0)
    y = 2 * (column.astype(np.int64) + 2) + row
    return 2.0 * np.stack([x1, x2], axis=1), y


def _pinwheel(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    num_arms, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25
    y = rng.integers(0, num_arms, n)
    features = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    angle = y * (2.0 * np.pi / num_arms) + rate * np.exp(features[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = np.stack([features[:, 0] * cos + features[:, 1] * sin,
                        features[:, 1] * cos - features[:, 0] * sin], axis=1)
    return 2.0 * rotated, y


def _two_spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    t = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3.0 * np.pi
    arm = np.stack([-np.cos(t) * t, np.sin(t) * t], axis=1) + 0.5 * rng.uniform(0.0, 1.0, (n, 2))
    sign = np.where(y == 0, 1.0, -1.0)[:, None]
    return sign * arm / 3.0 + 0.1 * rng.standard_normal((n, 2)), y


_SAMPLERS: dict[str, Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "two_moons": _two_moons,
    "circles": _circles,
    "eight_gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "two_spirals": _two_spirals,
}

TOY_DATASETS: tuple[str, ...] = tuple(_SAMPLERS)
"""The names of the 2-D toy datasets."""


@register_source("toys")
class Toys(ArraySource):
    """2-D toy densities, sampled afresh from the seed (see the module docstring)."""

    description = f"a 2-D toy ({', '.join(TOY_DATASETS)})"

    def recognises(self, spec: str) -> bool:
        return spec in _SAMPLERS

    def read(self, spec: str, options: LoadOptions) -> Arrays:
        if spec not in _SAMPLERS:
            raise ValueError(f"unknown toy {spec!r}; expected one of {', '.join(TOY_DATASETS)}")
        n = _DEFAULT_EXAMPLES if options.num_examples is None else options.num_examples
        x, y = _SAMPLERS[spec](n, np.random.default_rng([options.seed,
                                                          splits_lib.SAMPLE_STREAM]))
        return carve_test(x.astype(np.float32), y.astype(np.int64), options.seed)
