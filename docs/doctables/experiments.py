"""One row per experiment script: its headline numbers and wall time, from its JSON."""

from doctables import load, markdown_table

R = "experiments/results/"


def _seconds(value: float) -> str:
    return f"{value:,.0f} s"


def _toy_2d():
    record = load(R + "toy_2d.json")
    toys = record["toys"]
    nll = ", ".join(f"{name.replace('_', ' ')} {toys[name]['test_nll_nats']:.3f}"
                    + (f" / {toys[name]['data_entropy_nats']:.3f}"
                       if toys[name]["data_entropy_nats"] is not None else "")
                    for name in toys)
    tfp = record["two_moons_vs_tfp_builtin"]["tfp_builtin_realnvp_same_data_and_steps"]
    return ("RealNVP, 5 affine couplings, 2-D toys", "toy_2d.py",
            f"test NLL (nats) / data entropy: {nll}; TFP's `tfb.RealNVP`, same data and steps: "
            f"{tfp['test_nll_nats']:.3f} (two moons)",
            _seconds(record["six_toys_wall_seconds"]))


def _families():
    record = load(R + "toy_2d.json")["comparison"]
    toys = record["toys"]
    nsf = ", ".join(f"{name.replace('_', ' ')} {toys[name]['models']['nsf']['test_nll_nats']:.3f}"
                    f" (entropy {toys[name]['data_entropy_nats']:.3f})" for name in toys)
    return ("Every family, NSF and TFP's RealNVP / MAF, same steps", "toy_2d.py",
            f"NSF: {nsf} (table under Flow families)", _seconds(record["wall_seconds"]))


def _torus():
    record = load(R + "torus_von_mises.json")
    return ("Circular spline RealNVP, von Mises mixture on the torus", "torus_von_mises.py",
            f"{record['circular_spline']['test_nll_normalized_nats']:.3f} nats (exact entropy "
            f"{record['target']['entropy_nats']:.3f}); interval spline "
            f"{record['spline']['test_nll_nats']:.3f}", _seconds(record["wall_seconds"]))


def _ffjord():
    record = load(R + "ffjord_two_moons.json")
    return ("FFJORD against NSF, two moons", "ffjord_two_moons.py",
            f"FFJORD {record['ffjord']['test_nll_nats']:.3f}, NSF "
            f"{record['nsf']['test_nll_nats']:.3f} nats (entropy "
            f"{record['data_entropy_nats']:.3f}); FFJORD's step "
            f"{record['ffjord_step_cost_vs_nsf']}x NSF's",
            _seconds(record["ffjord"]["train_seconds"] + record["nsf"]["train_seconds"]))


def _conditional_toy():
    record = load(R + "conditional_toy_2d.json")
    c = record["comparison"]
    return ("Conditional NSF, ring radius given c", "conditional_toy_2d.py",
            f"{c['conditional_nll_given_c']:.3f} nats given c (exact "
            f"{c['exact_entropy_given_c']:.3f}); unconditional {c['unconditional_nll']:.3f} "
            f"(exact {c['exact_entropy_pooled']:.3f})", _seconds(record["wall_seconds"]))


def _conditional_glow():
    record = load(R + "conditional_glow.json")
    models = record["models"]
    return ("Class-conditional Glow, Fashion-MNIST", "conditional_glow.py",
            f"{models['conditional']['test']['bits_per_dim']:.3f} bits/dim given the class, "
            f"{models['unconditional']['test']['bits_per_dim']:.3f} unconditional; the label "
            f"is worth at most {record['label_information_bound_bits_per_dim']}",
            _seconds(record["wall_seconds"]))


def _vi():
    record = load(R + "vi_posterior.json")
    results = record["results"]
    kl = "; ".join(f"{target} " + " / ".join(f"{results[target][kind]['eval']['kl_q_p']:.3f}"
                                            for kind in ("iaf", "maf", "mean_field"))
                   for target in ("banana", "funnel"))
    return ("IAF / MAF / mean-field as `tfp.vi` posteriors", "vi_posterior.py",
            f"KL(q ‖ p): {kl}", _seconds(record["wall_seconds"]))


def _custom_flow():
    record = load(R + "custom_flow.json")
    return ("A custom conditional spline flow (the plugins guide)", "custom_flow.py",
            f"{record['test_nll_given_label_nats']:.3f} nats given the component (optimum "
            f"{record['optimum_nats']:.3f}); reload and export agree to "
            f"{record['max_abs_log_prob_difference']['served']:.1e}",
            _seconds(record["training"]["seconds"]))


def _fashion():
    record = load(R + "fashion_mnist_nice_realnvp.json")
    models = record["models"]
    cells = "; ".join(f"{label} {models[key]['test']['bits_per_dim']:.2f}"
                      for key, label in (("nice", "NICE"), ("realnvp_vector", "RealNVP vector"),
                                         ("realnvp", "RealNVP multi-scale")))
    return ("NICE and RealNVP, Fashion-MNIST", "fashion_mnist_nice_realnvp.py",
            f"bits/dim: {cells}; per-pixel histogram "
            f"{record['per_pixel_histogram_baseline_bits_per_dim']:.2f}",
            _seconds(record["wall_seconds"]))


def _glow():
    record = load(R + "glow_images.json")
    overflow = record["overflowed_sample_share_by_temperature"]
    return ("Glow (2 levels x 8 steps, 64 channels), Fashion-MNIST", "glow_images.py",
            f"{record['glow']['test']['bits_per_dim']:.2f} bits/dim "
            f"({record['glow']['epochs_run']} epochs); overflowing samples at T = "
            + " / ".join(overflow) + ": " + " / ".join(f"{v:.0%}" for v in overflow.values()),
            _seconds(record["wall_seconds"]))


def _attributes():
    record = load(R + "attribute_manipulation.json")
    cells = "; ".join(f"{name}: {values['fraction_classified_as_target'][-1]:.0%}"
                      for name, values in record["attributes"].items())
    return ("Latent attribute manipulation (the Glow above)", "attribute_manipulation.py",
            f"edited test images labelled as the target at strength {record['strengths'][-1]}: "
            f"{cells}", _seconds(record["wall_seconds"]))


def _mirrored():
    record = load(R + "mirrored_vs_single.json")
    results = record["results"]
    return ("MirroredStrategy (2 replicas) against one device", "mirrored_vs_single.py",
            "largest weight difference, SGD / Adam: " + "; ".join(
                f"{size.replace('_', ' ')} {results[size]['sgd']['max_abs_weight_difference']:.1e}"
                f" / {results[size]['adam']['max_abs_weight_difference']:.1e}"
                for size in ("tiny", "quick_start")), _seconds(record["wall_seconds"]))


def _maf_vs_iaf():
    record = load(R + "maf_vs_iaf.json")
    maf, iaf = record["seconds"]["maf"]["128"], record["seconds"]["iaf"]["128"]
    return ("MAF against IAF timing, D = 8 to 128", "maf_vs_iaf.py",
            f"D = 128: MAF sampling {maf['sample'] / maf['log_prob']:.0f}x its density; IAF "
            f"density {iaf['log_prob'] / iaf['sample']:.0f}x its sampling",
            _seconds(record["wall_seconds"]))


ROWS = (_toy_2d, _families, _torus, _ffjord, _conditional_toy, _conditional_glow, _vi,
        _custom_flow, _fashion, _glow, _attributes, _mirrored, _maf_vs_iaf)
SOURCES = sorted({R + name for name in (
    "toy_2d.json", "torus_von_mises.json", "ffjord_two_moons.json", "conditional_toy_2d.json",
    "conditional_glow.json", "vi_posterior.json", "custom_flow.json",
    "fashion_mnist_nice_realnvp.json", "glow_images.json", "attribute_manipulation.json",
    "mirrored_vs_single.json", "maf_vs_iaf.json")})


def table() -> str:
    rows = []
    for row in ROWS:
        what, script, result, wall = row()
        rows.append((what, f"`python experiments/{script}`", result, wall))
    return markdown_table(["experiment", "command", "result", "wall time"], rows, SOURCES)
