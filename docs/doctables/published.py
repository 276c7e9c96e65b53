"""The published bits/dim the experiments quote for context, as their JSON records them."""

from doctables import load, markdown_table

SOURCE = "experiments/results/fashion_mnist_nice_realnvp.json"
ROWS = (("nice_mnist", "NICE", "MNIST"), ("realnvp_mnist_bits_per_dim", "RealNVP", "MNIST"),
        ("glow_mnist_bits_per_dim", "Glow", "MNIST"),
        ("realnvp_cifar10_bits_per_dim", "RealNVP", "CIFAR-10"),
        ("glow_cifar10_bits_per_dim", "Glow", "CIFAR-10"))


def table() -> str:
    published = load(SOURCE)["published_for_context"]
    rows = []
    for key, model, data in ROWS:
        record = published[key]
        value = record.get("value", record.get("bits_per_dim_8bit"))
        rows.append((model, data, f"{value}", record["source"]))
    return markdown_table(["model", "data", "bits/dim", "as reported by"], rows, [SOURCE])
