"""A data source of your own: a CSV file of float vectors, one per row.

    python examples/csv_source.py

The one file a user writes to add a data source to tfp-flows (no edit to the package): a
`tfp_flows.datasets.ArraySource` subclass registered with
`@tfp_flows.datasets.register_source`. `tfp_flows.datasets.load` then reads the specs it
recognises (here a path ending in `.csv`, after every built-in source declined it) and any
spec `csv:<path>`, and so does the training command:

    PYTHONPATH=examples python -m tfp_flows.train --plugin=csv_source \
        --dataset=csv:/tmp/points.csv --flow=realnvp --hidden=16

An array source only reads the arrays: the splits (a validation part of the training rows),
batching, shuffling and seeding are those of every array source. A CSV has no test split of
its own, so 20% of the rows, chosen by the seed, are held out (`datasets.carve_test`). Lines
starting with `#` are comments; there is no header row and no label column.
"""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np

import tfp_flows
from tfp_flows import datasets


@datasets.register_source("csv")
class CSV(datasets.ArraySource):
    """A CSV file of float vectors, one per row (the same number of columns in each)."""

    description = "a .csv file of float vectors, one per row (csv:<path> for any file name)"

    def recognises(self, spec):
        return spec.endswith(".csv") and os.path.isfile(os.path.expanduser(spec))

    def read(self, spec, options):
        path = os.path.expanduser(spec)
        if not os.path.isfile(path):
            raise ValueError(f"csv: file {path!r} does not exist; expected {self.description}")
        try:
            x = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
        except ValueError as error:
            raise ValueError(f"csv: {path} must hold float vectors, one per row, with the same "
                             f"number of comma-separated columns in each ({error})") from None
        if len(x) < 2 or not np.all(np.isfinite(x)):
            raise ValueError(f"csv: {path} must hold at least 2 rows of finite numbers, got "
                             f"{len(x)} rows{'' if np.all(np.isfinite(x)) else ' with NaN/Inf'}")
        return datasets.carve_test(x, np.zeros(len(x), np.int64), options.seed)


def main(directory: str | None = None, epochs: int = 3) -> dict:
    """Writes a CSV of 3-D points, loads it through its spec and trains a RealNVP on it.

    Returns the model, the CSV's spec and the splits.
    """
    directory = directory or tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    points = rng.standard_normal((500, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.5],
                                                       [0.0, 0.0, 0.3]])
    path = f"{directory}/points.csv"
    np.savetxt(path, points, delimiter=",")

    splits = datasets.load(f"csv:{path}", batch_size=64, seed=0)
    keras.utils.set_random_seed(0)
    model = tfp_flows.realnvp(splits.event_shape, num_couplings=4, hidden=16, num_hidden=1)
    model.compile(keras.optimizers.Adam(1e-2))
    model.fit(splits.train, validation_data=splits.validation, epochs=epochs, verbose=0)
    nll = model.evaluate(splits.test, verbose=0, return_dict=True)["loss"]
    print(f"{splits.name}: event shape {splits.event_shape}, test NLL {nll:.3f} nats")
    return {"model": model, "spec": f"csv:{path}", "splits": splits, "points": points}


if __name__ == "__main__":
    main()
