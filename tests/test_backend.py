"""tfp_flows refuses, in one line, a Keras set to a backend other than TensorFlow."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_error(tmp_path, code: str = "import tfp_flows", backend: str | None = None) -> str:
    """The last line that `code` prints in a fresh process, with KERAS_BACKEND set to
    `backend` (unset if None) and Keras' config folder `tmp_path` (no keras.json)."""
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    env.update(PYTHONPATH=ROOT, KERAS_HOME=str(tmp_path))
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode != 0, "tfp_flows imported under a backend that is not TensorFlow"
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("backend", ["jax", "torch", "numpy"])
def test_keras_backend_variable_other_than_tensorflow_is_refused_in_one_line(tmp_path, backend):
    # jax and torch need not be installed: the check comes before Keras imports them.
    line = _import_error(tmp_path, backend=backend)
    assert line == (f"ImportError: tfp_flows needs Keras' TensorFlow backend (its bijectors are "
                    f"TensorFlow Probability's); Keras is set to {backend!r}: set "
                    f"KERAS_BACKEND=tensorflow before importing keras or tfp_flows.")


def test_keras_already_on_another_backend_is_refused(tmp_path):
    # What a keras.json naming jax gives once jax is installed (it is not needed here): Keras
    # imported, its backend not TensorFlow, KERAS_BACKEND unset.
    line = _import_error(tmp_path, "import keras\n"
                                   "keras.backend.backend = lambda: 'jax'\n"
                                   "import tfp_flows")
    assert line.startswith("ImportError: tfp_flows needs Keras' TensorFlow backend")
    assert "Keras is set to 'jax'" in line
