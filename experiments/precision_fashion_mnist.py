"""Quality per time: the same Glow on Fashion-MNIST, float32 against bfloat16, equal CPU time.

Each precision trains a fresh Glow (same seed, same batches) through `fit` for the same budget
of *process CPU time* (`time.process_time()`, all of the process's threads; tracing included),
then its bits/dim on the first `--test` images of the official test set is measured. CPU time
rather than wall time because the machine this ran on is shared: wall time would charge each
run for whatever else ran beside it. On a CPU without bfloat16 hardware (the machine record's
`cpu_bfloat16` is empty: no AMX, no AVX512-BF16) bfloat16 is emulated and does fewer steps in
the same time.

    python experiments/precision_fashion_mnist.py                 # 2 x 150 CPU-seconds
    python experiments/precision_fashion_mnist.py --quick         # a smoke test, scratch folder

Fashion-MNIST comes from Debian's dataset-fashion-mnist (`make fashion-mnist`).
Writes experiments/results/precision_fashion_mnist.json where bfloat16 is emulated, and
precision_fashion_mnist_<feature>.json where the CPU multiplies it in hardware (`amx_bf16` or
`avx512_bf16`, with oneDNN on), so that one kind of machine does not overwrite the other's.

    python experiments/precision_fashion_mnist.py --steps 1639    # equal steps instead

trains both for the same number of steps (the float32 run's count at equal time), which asks
whether bfloat16 learns as much per step; its JSON ends in `_equal_steps.json`.
"""

from __future__ import annotations

import argparse
import json
import time

import common
import keras

import tfp_flows

GLOW = {"num_scales": 2, "depth": 4, "hidden": 64}


def train_for(precision: str, splits, seconds: float, learning_rate: float,
              steps: int | None = None) -> dict:
    keras.utils.set_random_seed(0)
    model = tfp_flows.glow(splits.event_shape, num_levels=splits.num_levels,
                           precision=precision, **GLOW)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    budget = common.TrainingBudget(seconds, steps)
    wall = time.perf_counter()
    model.fit(splits.train.repeat(), epochs=1, steps_per_epoch=10**6, callbacks=[budget],
              verbose=0)
    cpu = time.process_time() - budget.start
    wall = time.perf_counter() - wall
    test = common.evaluate(model, splits.test)
    return {"steps": budget.steps, "cpu_seconds": round(cpu, 1), "wall_seconds": round(wall, 1),
            "steps_per_cpu_second": round(budget.steps / cpu, 3),
            "last_train_loss_nats": round(float(budget.last_logs["loss"]), 2), "test": test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-seconds", type=float, default=150.0)
    parser.add_argument("--train", type=int, default=20000, help="training images")
    parser.add_argument("--test", type=int, default=2000, help="test images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--data_dir", default=common.FASHION_MNIST_DIR)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None,
                        help="train each precision for this many steps instead of the CPU budget")
    cfg = parser.parse_args()
    if cfg.steps is not None and cfg.steps < 1:
        parser.error(f"--steps must be >= 1, got {cfg.steps}")
    if cfg.quick:
        cfg.cpu_seconds, cfg.train, cfg.test = 5.0, 512, 128
    splits = common.fashion_mnist_splits(cfg.data_dir, cfg.train, cfg.test, cfg.batch_size)
    results = {}
    for precision in ("float32", "bfloat16"):
        results[precision] = train_for(precision, splits, cfg.cpu_seconds, cfg.learning_rate,
                                       cfg.steps)
        r = results[precision]
        print(f"{precision}: {r['steps']} steps in {r['cpu_seconds']} CPU-s "
              f"({r['wall_seconds']} s wall), test {r['test']['bits_per_dim']} bits/dim",
              flush=True)
    bits = {p: r["test"]["bits_per_dim"] for p, r in results.items()}
    winner = min(bits, key=bits.get)
    machine = common.machine()
    hardware = machine["cpu_bfloat16"] if machine["onednn"] else []
    name = "_".join(["precision_fashion_mnist", *hardware[:1]]
                    + (["equal_steps"] if cfg.steps is not None else [])) + ".json"
    path = common.output_dir(cfg.quick) / name
    path.write_text(json.dumps({
        "command": "python experiments/precision_fashion_mnist.py" + (" --quick" if cfg.quick
                                                                      else "")
                   + (f" --steps {cfg.steps}" if cfg.steps is not None else ""),
        "config": {**vars(cfg), "glow": GLOW},
        "budget": (f"{cfg.steps} steps per precision" if cfg.steps is not None else
                   "equal process CPU time per precision (time.process_time, tracing "
                   "included); the machine is shared, so wall time would not be a fair budget"),
        "machine": machine, "results": results, "lower_test_bits_per_dim": winner,
        "bits_per_dim_difference_bfloat16_minus_float32": round(
            bits["bfloat16"] - bits["float32"], 4),
        "steps_ratio_bfloat16_over_float32": round(
            results["bfloat16"]["steps"] / results["float32"]["steps"], 3)},
        indent=2, default=str) + "\n")
    print(f"lower test bits/dim: {winner}; wrote {path}")


if __name__ == "__main__":
    main()
