"""The numbers README.md and the docs pages quote in prose are those of the committed JSONs.

The docs' tables are generated from the JSONs (docs/doctables, rendered by tests/test_docs.py);
what is typed is checked here.
"""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
GUIDES = ROOT / "docs" / "guides"
RESULTS = ROOT / "experiments" / "results"
BENCHMARKS = ROOT / "benchmarks" / "results"


def _section(page: str, title: str) -> str:
    """The `## title` section of the Markdown page `page`, up to the next `## ` heading."""
    start = page.index(f"\n## {title}\n")
    end = page.find("\n## ", start + 1)
    return page[start:end if end >= 0 else len(page)]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_readme_headline_numbers_are_those_of_their_jsons():
    headline = _flat(_section(README, "Headline numbers"))
    glow = json.loads((BENCHMARKS / "2026-12-04-cpu-glow-fit-plugins-idle.json").read_text())
    glow = glow["results"]["glow"]
    assert (f"Glow through `model.fit` at {glow['fit_in_memory_ex_s_ratio']:.2f}x the speed"
            in headline)
    assert f"sampling {glow['sample_ex_s_ratio']:.2f}x" in headline
    images = json.loads((RESULTS / "glow_images.json").read_text())["glow"]
    assert (f"{images['test']['bits_per_dim']:.2f} bits/dim** on the test set after "
            f"{images['epochs_run']} epochs") in headline
    moons = json.loads((RESULTS / "toy_2d.json").read_text())["comparison"]["toys"]["two_moons"]
    assert (f"two moons: {moons['models']['nsf']['test_nll_nats']:.3f} nats**, against the "
            f"data's entropy of {moons['data_entropy_nats']:.3f}") in headline
    bf16 = _precision_ratios("32x32x3")
    assert (f"Glow 32x32x3 trains at {bf16['oneDNN on, XLA off']:.2f}x float32** through "
            f"`model.fit` (oneDNN on; emulated with it off, "
            f"{bf16['oneDNN off, XLA off']:.2f}x)") in headline
    funnel = json.loads((RESULTS / "vi_posterior.json").read_text())["results"]["funnel"]
    assert (f"KL(q ‖ p) = {funnel['iaf']['eval']['kl_q_p']}**, against "
            f"{funnel['mean_field']['eval']['kl_q_p']} for a mean-field Gaussian") in headline
    for source in re.findall(r"`((?:benchmarks|experiments)/results/[^`]+\.json)`", headline):
        assert (ROOT / source).is_file(), source


def _json_documents(block: str) -> list:
    """The JSON documents written one after another in `block`."""
    decoder, documents, position = json.JSONDecoder(), [], 0
    while block[position:].strip():
        position += len(block[position:]) - len(block[position:].lstrip())
        document, position = decoder.raw_decode(block, position)
        documents.append(document)
    return documents


def test_serving_bodies_are_those_of_serving_example_json():
    examples = json.loads((RESULTS / "serving_example.json").read_text())["examples"]
    blocks = re.findall(r"```json\n(.*?)```", (GUIDES / "serving.md").read_text(), re.S)
    shown = {}
    for block in blocks:
        request, response = _json_documents(block)
        shown[request["signature_name"]] = {"request": request, "response": response}
    assert shown == examples


def _vi_posterior():
    return json.loads((RESULTS / "vi_posterior.json").read_text())["results"]


def test_vi_stability_paragraph_is_that_of_vi_stability_json():
    record = json.loads((RESULTS / "vi_stability.json").read_text())
    vi, density = record["vi"], record["density"]
    text = _flat((GUIDES / "variational-inference.md").read_text())
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


def test_torus_prose_is_that_of_torus_von_mises_json():
    record = json.loads((RESULTS / "torus_von_mises.json").read_text())
    section = _section((GUIDES / "families.md").read_text(),
                       "Flows on the torus (circular splines)")
    assert f"{record['target']['entropy_nats']} nats" in section
    for key in ("circular_spline", "spline"):
        result = record[key]
        assert f"({result['train_steps']:,} steps)" in section


def test_conditional_guide_numbers_are_those_of_their_jsons():
    text = _flat((GUIDES / "conditional.md").read_text())
    toy = json.loads((RESULTS / "conditional_toy_2d.json").read_text())["comparison"]
    assert (f"reaches {toy['conditional_nll_given_c']:.3f} nats given c against the exact "
            f"conditional entropy {toy['exact_entropy_given_c']:.3f}; the same NSF without the "
            f"context {toy['unconditional_nll']:.3f} against the pooled entropy "
            f"{toy['exact_entropy_pooled']:.3f}. The gap, "
            f"{toy['unconditional_minus_conditional']:.3f} nats, is the information the context "
            f"carries (exactly {toy['exact_information_I_x_c']:.3f} nats)") in text
    glow = json.loads((RESULTS / "conditional_glow.json").read_text())
    models, marginal = glow["models"], glow["conditional_marginal"]
    assert (f"**{models['conditional']['test']['bits_per_dim']:.3f} given the class** against "
            f"**{models['unconditional']['test']['bits_per_dim']:.3f} unconditional** "
            f"({models['conditional']['parameters']:,} vs "
            f"{models['unconditional']['parameters']:,} parameters") in text
    assert (f"{marginal['marginal_bits_per_dim']:.3f} bits/dim on the first "
            f"{marginal['examples']:,} test images") in text
    assert f"it labels {marginal['generative_classifier_accuracy']:.0%} of them right" in text


def test_families_guide_numbers_are_those_of_their_jsons():
    text = _flat((GUIDES / "families.md").read_text())
    issue = json.loads((RESULTS / "toy_2d.json").read_text())["comparison"]["issue_eight_gaussians"]
    assert (f"(entropy {issue['data_entropy_nats']:.3f} nats), NSF with its defaults reaches "
            f"{issue['nsf']['test_nll_nats']:.3f} nats") in text
    ffjord = json.loads((RESULTS / "ffjord_two_moons.json").read_text())
    fewer = ffjord["nsf"]["parameters"] / ffjord["ffjord"]["parameters"]
    assert (f"with {fewer:.0f}x fewer parameters than NSF, at "
            f"{ffjord['ffjord_step_cost_vs_nsf']:.0f}x NSF's cost per step") in text


def test_streaming_guide_numbers_are_those_of_the_pipeline_json():
    text = _flat((GUIDES / "streaming.md").read_text())
    record = json.loads((BENCHMARKS / "2026-12-01-cpu-pipeline.json").read_text())
    small, large = record["rows"]
    assert (f"peak resident memory {small['peak_rss_mib']:,.0f} MiB and "
            f"{large['peak_rss_mib']:,.0f} MiB (10x the data, {record['peak_rss_ratio']:.2f}x "
            f"the memory)") in text
    low, high = (f"{ratio:.0f}" for ratio in record["pipeline_over_training"])
    assert f"delivers {low}-{high}x the images per second" in text
    assert (f"({small['pipeline_images_per_s']:,.0f} vs {small['train_images_per_s']:,.0f} and "
            f"{large['pipeline_images_per_s']:,.0f} vs {large['train_images_per_s']:,.0f} "
            f"images/s") in text


def test_every_result_file_the_docs_cite_is_committed():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    cited = {path for page in pages for path in re.findall(
        r"((?:benchmarks|experiments)/results/[\w.-]+\.(?:json|png))", page.read_text())}
    assert cited and sorted(path for path in cited if not (ROOT / path).is_file()) == []


def test_the_neutra_guide_numbers_are_those_of_its_json():
    text = " ".join((ROOT / "docs/guides/neutra.md").read_text().split())
    record = json.loads((RESULTS / "neutra_funnel.json").read_text())
    plain, neutra = record["samplers"]
    assert (plain["sampler"], neutra["sampler"]) == ("hmc", "neutra_hmc")
    assert f"KL(q || p) is {record['vi']['kl_q_p_nats']:.3f} nats" in text
    per_draw = neutra["ess_v_per_1000_gradients"] / plain["ess_v_per_1000_gradients"]
    total = (neutra["ess_v_per_1000_total_gradients"]
             / plain["ess_v_per_1000_total_gradients"])
    assert f"about {round(per_draw, -1):.0f} times the effective sample size" in text
    assert f"still about {round(total, -1):.0f} times" in text
    assert f"std of v ({plain['std_v']:.1f} against the true 3)" in text
    assert f"reach v = {neutra['min_v']:.1f}" in text


def _precision_ratios(shape: str) -> dict:
    """Images/s of our bfloat16 Glow over our float32 one, per cell of the AVX512-BF16 run of
    benchmarks/precision.py at `shape`."""
    path = BENCHMARKS / f"2026-12-04-cpu-precision-{shape}-avx512_bf16.json"
    results = json.loads(path.read_text())["results"]
    return {cell: r["ours bfloat16"]["train_images_s"] / r["ours float32"]["train_images_s"]
            for cell, r in results.items()}


def test_the_precision_guide_numbers_are_those_of_its_jsons():
    page = _flat((GUIDES / "precision.md").read_text())
    small, large = _precision_ratios("16x16x3"), _precision_ratios("32x32x3")
    assert (f"bfloat16 trained Glow 32x32x3 at {large['oneDNN on, XLA off']:.2f}x float32 and "
            f"Glow 16x16x3 at {small['oneDNN on, XLA off']:.2f}x") in page
    slower = [round(1 / ratios["oneDNN off, XLA off"]) for ratios in (small, large)]
    assert f"loses by {slower[0]}x (16x16x3) and {slower[1]}x (32x32x3)" in page
    with_xla = [ratios[cell] for ratios in (small, large) for cell in ratios if "XLA on" in cell]
    assert f"({min(with_xla):.2f}x to {max(with_xla):.2f}x)" in page
    record = json.loads((RESULTS / "precision_fashion_mnist_avx512_bf16.json").read_text())
    bits = {p: r["test"]["bits_per_dim"] for p, r in record["results"].items()}
    assert (f"bfloat16 did {record['steps_ratio_bfloat16_over_float32']:.2f}x the steps of "
            f"float32 in the same CPU time and ended "
            f"{bits['float32'] - bits['bfloat16']:.2f} bits/dim lower") in page
    steps = json.loads((RESULTS / "precision_fashion_mnist_avx512_bf16_equal_steps.json")
                       .read_text())
    same = {p: r["test"]["bits_per_dim"] for p, r in steps["results"].items()}
    assert steps["command"].endswith(f"--steps {steps['results']['float32']['steps']}")
    assert (f"bfloat16 ended {same['float32'] - same['bfloat16']:.2f} bits/dim *lower* than "
            f"float32 ({same['bfloat16']:.3f} against {same['float32']:.3f}; float32 "
            f"reproduced its {bits['float32']:.3f}") in page
    emulated = json.loads((RESULTS / "precision_fashion_mnist.json").read_text())
    assert (f"ended {emulated['bits_per_dim_difference_bfloat16_minus_float32']:.1f} bits/dim "
            f"higher") in page
