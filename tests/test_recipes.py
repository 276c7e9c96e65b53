"""Every ```python block of docs/recipes.md and docs/guides/neutra.md runs alone in a fresh
Python process (as a user would run it), in a temporary working directory; a block with
`<!-- skip: REASON -->` on the line above its fence is skipped for that reason."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("docs/recipes.md", "docs/guides/neutra.md")
BLOCK = re.compile(r"^(?:<!-- skip: (.+?) -->\n)?```python\n(.*?)^```$", re.M | re.S)


def _blocks():
    for page in PAGES:
        text = (ROOT / page).read_text()
        for match in BLOCK.finditer(text):
            skip, code = match.groups()
            line = text.count("\n", 0, match.start()) + 1
            marks = [pytest.mark.skip(reason=skip)] if skip else []
            yield pytest.param(code, id=f"{page}:{line}", marks=marks)


def test_the_pages_have_blocks():
    assert len(list(_blocks())) >= 6


@pytest.mark.parametrize("code", _blocks())
def test_block_runs_alone(code, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_neutra_guide_numbers_are_those_of_its_json():
    import json

    text = " ".join((ROOT / "docs/guides/neutra.md").read_text().split())
    record = json.loads((ROOT / "experiments/results/neutra_funnel.json").read_text())
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
