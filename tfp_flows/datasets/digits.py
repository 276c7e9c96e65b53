"""scikit-learn's 8x8 handwritten digits (spec "digits"): 1797 images of 17 levels (0..16),
labelled 0-9, 20% held out as test; no download."""

from __future__ import annotations

import numpy as np

from tfp_flows.datasets.arrays import Arrays, carve_test
from tfp_flows.datasets.options import LoadOptions
from tfp_flows.datasets.source import ArraySource, register_source

_LEVELS = 17


@register_source("digits")
class Digits(ArraySource):
    """scikit-learn's 8x8 digits."""

    description = "'digits' (scikit-learn's 8x8 digits, 17 levels, no download)"

    def recognises(self, spec: str) -> bool:
        return spec == "digits"

    def read(self, spec: str, options: LoadOptions) -> Arrays:
        if spec != "digits":
            raise ValueError(f"the digits source reads the spec 'digits', got {spec!r}")
        # sklearn is slow to import and only needed here.
        from sklearn.datasets import load_digits

        digits = load_digits()
        return carve_test(digits.images.astype(np.uint8)[..., None],
                          digits.target.astype(np.int64), options.seed, _LEVELS)
