"""The public API at compiled speed: `model.sample` / `log_prob` / `encode` / `decode`.

    python -m benchmarks.public_api                 # about a minute on 2 CPU cores
    python -m benchmarks.public_api --rounds 3      # quicker, noisier

Glow at the benchmark's matched size (16x16x3, 2 scales x 4 steps, 64 hidden channels, 256
pixel levels, fitted for a few steps so ActNorm is initialised). For each public method it
times three routes, taking turns round by round so background load hits all of them alike:
- `public`: the method a user calls (`model.sample(64, seed=s)`), which checks its inputs
  eagerly and runs a compiled function;
- `hand`: the same computation wrapped by hand in one `tf.function` (the cost floor);
- `eager`: the same computation run eagerly (what the public API did before it was compiled).
Prints the median ratios public / hand (target: at most 1.3x) and eager / public, and the
number of traces of each public function over 20 calls with varying n, temperature, seed and
batch size (target: 1). Writes benchmarks/results/<date>-cpu-public-api.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

import tfp_flows
from tfp_flows import machine

SHAPE = (16, 16, 3)


def _timed(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    np.asarray(out)  # waits for the last result
    return (time.perf_counter() - start) / repeats


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = tfp_flows.glow(SHAPE, num_scales=2, depth=4, hidden=64, num_levels=256)
    x = (rng.integers(0, 256, (256, *SHAPE)) + rng.random((256, *SHAPE))).astype("float32")
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(x, batch_size=32, epochs=1, verbose=0)
    z = model.encode(x)
    x_t = tf.constant(x)

    computations = model.computations()
    hand_sample = tf.function(lambda seed: computations["sample"](64, 1.0, seed))
    hand_log_prob = tf.function(computations["log_prob"])
    hand_encode = tf.function(computations["encode"])
    hand_decode = tf.function(computations["decode"])
    routes = {
        "sample(64)": {"public": lambda: model.sample(64, seed=1),
                       "hand": lambda: hand_sample(tf.constant(1, tf.int64)),
                       "eager": lambda: computations["sample"](64, 1.0, 1)},
        "log_prob(256)": {"public": lambda: model.log_prob(x),
                          "hand": lambda: hand_log_prob(x_t),
                          "eager": lambda: computations["log_prob"](x_t)},
        "encode(256)": {"public": lambda: model.encode(x), "hand": lambda: hand_encode(x_t),
                        "eager": lambda: computations["encode"](x_t)},
        "decode(256)": {"public": lambda: model.decode(z), "hand": lambda: hand_decode(z),
                        "eager": lambda: computations["decode"](z)},
    }
    examples = {"sample(64)": 64, "log_prob(256)": 256, "encode(256)": 256, "decode(256)": 256}
    for calls in routes.values():  # trace and warm up every route
        for call in calls.values():
            call()
    times = {name: {route: [] for route in calls} for name, calls in routes.items()}
    for _ in range(args.rounds):
        for name, calls in routes.items():
            for route, call in calls.items():
                # Eager calls are slow; one per round is enough to rank them.
                times[name][route].append(_timed(call, 1 if route == "eager" else args.repeats))

    results = {}
    for name, by_route in times.items():
        public, hand, eager = (np.array(by_route[r]) for r in ("public", "hand", "eager"))
        results[name] = {
            "examples_per_second": {r: round(examples[name] / statistics.median(t), 1)
                                    for r, t in by_route.items()},
            "public_over_hand": round(float(np.median(public / hand)), 3),
            "eager_over_public": round(float(np.median(eager / public)), 2),
        }

    fresh = tfp_flows.glow(SHAPE, num_scales=2, depth=4, hidden=64, num_levels=256)
    fresh.initialize_from_data(x[:32])
    for i in range(20):
        n = 1 + i % 5
        fresh.sample(n, temperature=0.5 + 0.1 * (i % 4), seed=i if i % 3 else None)
        fresh.log_prob(x[:1 + 3 * i])
        fresh.decode(fresh.encode(x[:2 + i]))
    traces = {name: fn.experimental_get_tracing_count()
              for name, fn in fresh.compiled_functions().items()}

    record = {
        "what": "public API (model.sample / log_prob / encode / decode) vs a hand-wrapped "
                "tf.function and the eager computation",
        "command": "python -m benchmarks.public_api",
        "model": "glow 16x16x3, num_scales=2, depth=4, hidden=64, num_levels=256",
        "rounds": args.rounds, "repeats": args.repeats,
        "results": results,
        "traces_over_20_calls": traces,
        "machine": machine.describe(),
    }
    date = datetime.date.today().isoformat()
    path = os.path.join(os.path.dirname(__file__), "results", f"{date}-cpu-public-api.json")
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print("| call | public ex/s | hand-wrapped ex/s | eager ex/s | public / hand | "
          "eager / public |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        rate = r["examples_per_second"]
        print(f"| {name} | {rate['public']} | {rate['hand']} | {rate['eager']} | "
              f"{r['public_over_hand']}x | {r['eager_over_public']}x |")
    print(f"traces over 20 calls: {traces}; wrote {path}")
    return record


if __name__ == "__main__":
    main()
