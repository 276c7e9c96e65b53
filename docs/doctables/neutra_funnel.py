"""NeuTra HMC against plain HMC on Neal's funnel (experiments/neutra_funnel.py)."""

from doctables import load, markdown_table

SOURCE = "experiments/results/neutra_funnel.json"
LABELS = {"hmc": "HMC", "neutra_hmc": "NeuTra HMC (IAF)"}


def table() -> str:
    rows = [(LABELS[s["sampler"]], f"{s['final_step_size']:.2f}", f"{s['acceptance_rate']:.2f}",
             f"{s['ess_v']:,.0f}", f"{s['ess_x_min']:,.0f}",
             f"{s['ess_v_per_1000_gradients']:.1f}", f"{s['ess_x_min_per_1000_gradients']:.1f}",
             f"{s['ess_v_per_1000_total_gradients']:.1f}", f"{s['std_v']:.2f}")
            for s in load(SOURCE)["samplers"]]
    return markdown_table(["sampler", "step size", "acceptance", "ESS v", "ESS x (min)",
                           "ESS v / 1000 grads", "ESS x (min) / 1000 grads",
                           "ESS v / 1000 grads, all costs", "std of v (true 3)"],
                          rows, [SOURCE])
