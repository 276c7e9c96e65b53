"""Glow on Fashion-MNIST, float32 against bfloat16 for the same process CPU time or the same
number of steps (experiments/precision_fashion_mnist.py), on each kind of CPU it ran on."""

from doctables import load, markdown_table

SOURCES = ["experiments/results/precision_fashion_mnist_avx512_bf16.json",
           "experiments/results/precision_fashion_mnist_avx512_bf16_equal_steps.json",
           "experiments/results/precision_fashion_mnist.json"]


def _cpu(machine: dict) -> str:
    hardware = ", ".join(machine["cpu_bfloat16"]) or "none (AVX2)"
    # The first record predates the machine record's oneDNN key; TF's default on that
    # AVX2-only CPU, where it ran, was off.
    onednn = {True: "on", False: "off", None: "off (default)"}[machine.get("onednn")]
    return f"bfloat16 hardware: {hardware}; oneDNN {onednn}"


def table() -> str:
    rows = []
    for source in SOURCES:
        record = load(source)
        steps = record["config"].get("steps")
        budget = f"{steps} steps" if steps else f"{record['config']['cpu_seconds']:g} CPU-s"
        for precision, r in record["results"].items():
            rows.append((_cpu(record["machine"]), budget, precision, r["steps"],
                         r["cpu_seconds"], r["wall_seconds"],
                         f"{r['test']['bits_per_dim']:.3f}"))
    return markdown_table(["CPU", "budget", "precision", "steps", "process CPU s", "wall s",
                           "test bits/dim"], rows, SOURCES)
