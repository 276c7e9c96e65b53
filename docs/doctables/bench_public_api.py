"""The public API's compiled calls against hand-wrapped and eager ones
(python -m benchmarks.public_api)."""

from doctables import load, markdown_table

SOURCE = "benchmarks/results/2026-12-01-cpu-public-api.json"


def table() -> str:
    rows = []
    for call, record in load(SOURCE)["results"].items():
        speed = record["examples_per_second"]
        rows.append((f"`{call}`", f"{speed['public']:,.0f}", f"{speed['hand']:,.0f}",
                     f"{speed['eager']:,.0f}", f"{record['public_over_hand']:.2f}x",
                     f"{record['eager_over_public']:.1f}x"))
    return markdown_table(["call", "public API ex/s", "hand-wrapped `tf.function` ex/s",
                           "eager ex/s", "public / hand-wrapped time", "eager / public time"],
                          rows, [SOURCE])
