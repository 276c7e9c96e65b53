"""The numbers the README quotes from committed result JSONs are those JSONs' numbers."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
RESULTS = ROOT / "experiments" / "results"


def _section(title: str) -> str:
    """The README's `## title` section, up to the next `## ` heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else len(README)]


def _json_documents(block: str) -> list:
    """The JSON documents written one after another in `block`."""
    decoder, documents, position = json.JSONDecoder(), [], 0
    while block[position:].strip():
        position += len(block[position:]) - len(block[position:].lstrip())
        document, position = decoder.raw_decode(block, position)
        documents.append(document)
    return documents


def _table_rows(text: str, first_cell: str) -> list[list[str]]:
    """The cells of the markdown table rows of `text` whose first cell is `first_cell`."""
    rows = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


def test_serving_bodies_are_those_of_serving_example_json():
    examples = json.loads((RESULTS / "serving_example.json").read_text())["examples"]
    blocks = re.findall(r"```json\n(.*?)```", _section("Serving with TF Serving"), re.S)
    shown = {}
    for block in blocks:
        request, response = _json_documents(block)
        shown[request["signature_name"]] = {"request": request, "response": response}
    assert shown == examples


def _vi_posterior():
    return json.loads((RESULTS / "vi_posterior.json").read_text())["results"]


LABELS = {"mean-field Gaussian": "mean_field", "IAF": "iaf", "MAF": "maf",
          "IAF (small)": "iaf_small", "planar": "planar", "radial": "radial"}


@pytest.mark.parametrize("target", ["banana", "funnel"])
def test_variational_posterior_table_is_that_of_vi_posterior_json(target):
    results = _vi_posterior()[target]
    rows = _table_rows(_section("TFP inference: flows as variational posteriors"), target)
    assert [LABELS[row[1]] for row in rows] == ["mean_field", "iaf", "maf", "iaf_small",
                                                 "planar", "radial"]
    for _, label, parameters, elbo, kl, ms_per_step in rows:
        record = results[LABELS[label]]
        assert int(parameters.replace(",", "")) == record["parameters"]
        assert float(elbo) == record["eval"]["elbo"]
        assert float(kl) == record["eval"]["kl_q_p"]
        assert float(ms_per_step) == round(record["ms_per_step"], 1)


def test_experiments_row_rounds_the_vi_posterior_json():
    results = _vi_posterior()
    row = next(line for line in README.splitlines()
               if line.startswith("| IAF / MAF / mean-field as `tfp.vi` posteriors"))
    for target in ("banana", "funnel"):
        quoted = re.search(rf"{target} ([\d.]+) / ([\d.]+) / ([\d.]+)", row).groups()
        expected = [f"{results[target][kind]['eval']['kl_q_p']:.3f}"
                    for kind in ("iaf", "maf", "mean_field")]
        assert list(quoted) == expected


def test_vi_stability_paragraph_is_that_of_vi_stability_json():
    record = json.loads((RESULTS / "vi_stability.json").read_text())
    vi, density = record["vi"], record["density"]
    text = " ".join(_section("TFP inference: flows as variational posteriors").split())
    runs = len(vi["soft_clamp"]["runs"])
    assert vi["soft_clamp"]["runs_with_nonfinite_loss"] == 0
    assert f"run unseeded {runs} times" in text
    assert f"finite losses all {runs} times" in text
    assert f"KL(q ‖ p), {vi['soft_clamp']['median_final_loss']})" in text
    failed = [r["first_nonfinite_step"] for r in vi["exp"]["runs"]
              if r["first_nonfinite_step"] is not None]
    assert (f"{len(failed)} of {len(vi['exp']['runs'])} runs went NaN at step "
            f"{', '.join(map(str, failed))}") in text
    for scale_fn, after in (("soft_clamp", "nats with it"), ("exp", "without")):
        nll = " / ".join(f"{run['test_nll']:.4f}" for run in density[scale_fn])
        assert f"{nll} {after}" in text
    steps = {run["steps"] for scale_fn in ("soft_clamp", "exp") for run in density[scale_fn]}
    assert f"{steps.pop()} steps, seeds 0-2" in text and not steps
    grid = sorted(run["grid_nonfinite"] for run in density["exp"])
    assert f"{grid[0]:,} to {grid[-1]:,} of 14,641 grid points" in text
    assert all(run["grid_nonfinite"] == 0 for run in density["soft_clamp"])


def test_torus_table_is_that_of_torus_von_mises_json():
    record = json.loads((RESULTS / "torus_von_mises.json").read_text())
    section = _section("Flows on the torus (circular splines)")
    assert f"{record['target']['entropy_nats']} nats" in section
    for first_cell, key, nll, gap in (
            ("`circular_spline` (normal base renormalised)", "circular_spline",
             "test_nll_normalized_nats", "normalized_nll_minus_entropy_nats"),
            ("`spline`, bound 4 (a density on the plane)", "spline", "test_nll_nats",
             "nll_minus_entropy_nats")):
        result = record[key]
        [row] = _table_rows(section, first_cell)
        assert float(row[1]) == result[nll]
        assert float(row[2].strip("*")) == result[gap]
        kl, error = re.match(r"([\d.]+) ± ([\d.]+)", row[3]).groups()
        assert (float(kl), float(error)) == (result["kl_estimate_nats"],
                                             result["kl_standard_error_nats"])
        assert float(row[4]) == result["model_mass_on_torus"]
        assert row[5] == f"{round(result['train_seconds'])} s"
        assert f"({result['train_steps']:,} steps)" in section
