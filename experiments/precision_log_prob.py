"""How far a bfloat16 model's density is from float32's: log_prob of the same x, same weights.

For every built-in family, a small model is trained briefly with `precision="bfloat16"`
(vector families on two moons, the image families on the 8x8 digits, 17 levels), then its
weights are loaded into the same model built with `precision="float32"`, and both give
log p(x) of every test example. The difference is what the density is exact to under bfloat16
relative to float32: the bfloat16 model's density is exact for the map its bfloat16 networks
compute (tests/test_precision.py), and that map differs from the float32 one by the rounding
of the networks' outputs. Planar and radial flows have no networks: their difference is 0.

    python experiments/precision_log_prob.py            # about 5 CPU-minutes
    python experiments/precision_log_prob.py --quick    # a smoke test, to a scratch folder

Writes experiments/results/precision_log_prob.json.
"""

from __future__ import annotations

import argparse
import json
import time

import common
import keras
import numpy as np
import tensorflow as tf

import tfp_flows
from tfp_flows import datasets

# name: (dataset, family, arguments, epochs)
CASES = {
    "nice": ("two_moons", "nice", {"hidden": 32}, 4),
    "realnvp": ("two_moons", "realnvp", {"hidden": 32}, 4),
    "nsf": ("two_moons", "nsf", {"hidden": 32, "bins": 8}, 4),
    "glow (vectors)": ("two_moons", "glow", {"depth": 4, "hidden": 32}, 4),
    "maf": ("two_moons", "maf", {"hidden": 32}, 4),
    "iaf": ("two_moons", "iaf", {"hidden": 32}, 4),
    "planar": ("two_moons", "planar", {}, 4),
    "radial": ("two_moons", "radial", {}, 4),
    "ffjord": ("two_moons", "ffjord", {"hidden": 32}, 1),
    "realnvp (digits)": ("digits", "realnvp", {"num_scales": 1, "hidden": 32}, 4),
    "glow (digits)": ("digits", "glow", {"num_scales": 2, "depth": 4, "hidden": 32}, 4),
    "maf (digits)": ("digits", "maf", {"num_layers": 2, "hidden": 128}, 4),
}


def measure(dataset: str, family: str, arguments: dict, epochs: int, quick: bool) -> dict:
    splits = datasets.load(dataset, batch_size=128, num_examples=400 if quick else 3000)
    keras.utils.set_random_seed(0)
    kwargs = {**arguments, "num_levels": splits.num_levels}
    model = tfp_flows.build(family, splits.event_shape, precision="bfloat16", **kwargs)
    start = time.process_time()
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.fit(splits.train, epochs=1 if quick else epochs, verbose=0)
    seconds = time.process_time() - start
    reference = tfp_flows.build(family, splits.event_shape, precision="float32", **kwargs)
    reference.set_weights(model.get_weights())
    x = tf.concat(list(splits.test), 0)
    low, high = model.log_prob(x).numpy(), reference.log_prob(x).numpy()
    difference = low - high
    dims = int(np.prod(splits.event_shape))
    return {"dataset": dataset, "event_shape": list(splits.event_shape),
            "arguments": arguments, "epochs": epochs, "test_examples": len(x),
            "train_cpu_seconds": round(seconds, 1),
            "test_nll_nats_bfloat16": round(-float(np.mean(low)), 4),
            "test_nll_nats_float32": round(-float(np.mean(high)), 4),
            "mean_abs_difference_nats": float(np.mean(np.abs(difference))),
            "max_abs_difference_nats": float(np.max(np.abs(difference))),
            "mean_difference_nats": float(np.mean(difference)),
            "mean_abs_difference_nats_per_dim": float(np.mean(np.abs(difference)) / dims)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", default=",".join(CASES))
    cfg = parser.parse_args()
    results = {}
    for name in cfg.cases.split(","):
        results[name] = measure(*CASES[name], cfg.quick)
        r = results[name]
        print(f"{name}: |bf16 - f32| mean {r['mean_abs_difference_nats']:.2e}, max "
              f"{r['max_abs_difference_nats']:.2e} nats; NLL {r['test_nll_nats_bfloat16']} / "
              f"{r['test_nll_nats_float32']}", flush=True)
    path = common.output_dir(cfg.quick) / "precision_log_prob.json"
    path.write_text(json.dumps({
        "command": "python experiments/precision_log_prob.py" + (" --quick" if cfg.quick
                                                                 else ""),
        "what": "log_prob of the same test x: a model trained briefly with "
                "precision='bfloat16' against its weights in a float32 model; differences are "
                "bfloat16 minus float32, in nats per example",
        "machine": common.machine(), "results": results}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
