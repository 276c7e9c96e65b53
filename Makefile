# Two entry points for a fresh machine: `make demo` and `make test`. Both create the virtual
# environment on first use (about two minutes) and reuse it afterwards.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test docs lint experiments benchmark gpu clean fashion-mnist

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

# The main job on data that needs no download: RealNVP on two moons, Glow on 8x8 digits.
demo: $(STAMP)
	$(PY) -m tfp_flows.train --flow=realnvp --dataset=two_moons --batch_size=256 \
		--learning_rate=3e-3 --epochs=20 --output_dir=runs/two_moons
	$(PY) -m tfp_flows.train --flow=glow --dataset=digits --num_scales=2 --depth=4 --hidden=64 \
		--learning_rate=3e-3 --epochs=20 --output_dir=runs/glow_digits
	@echo "Outputs: runs/two_moons and runs/glow_digits (metrics.json, PNG figures, model.keras, TensorBoard logs in logs/)"

# Real Fashion-MNIST from Debian's dataset-fashion-mnist (MIT licence), installed when missing and
# this is root with apt (CI is); elsewhere its test is skipped, under CI it fails instead.
FASHION_MNIST := /usr/share/datasets/fashion-mnist
fashion-mnist:
	@test -d $(FASHION_MNIST) || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		(apt-get update -q && apt-get install -y -q dataset-fashion-mnist)

# TF turns oneDNN on by default on CPUs with AVX512-VNNI, AVX512-BF16 or AMX (recent Intel
# Xeons, AMD Zen 4) and off on others, and some ops behave differently under it: the whole suite runs with oneDNN forced on, then the exactness and property tests
# again with it off, so both settings are proven whatever this machine's CPU. The second pass
# skips what no kernel library changes: the training command's flag refusals (test_properties.py,
# no TensorFlow op) and the tests marked kernel_independent (a model saved, reloaded or exported
# and compared with itself in one process, traces counted, argument types), about a third of its
# time.
PORTABILITY_TESTS := tests/bijectors tests/nets tests/transforms tests/test_bases.py \
	tests/test_properties.py tests/test_flow_model.py \
	tests/test_conditional.py tests/test_steps.py tests/test_zoo.py::test_vector_flow_is_exact_and_invertible \
	tests/test_zoo.py::test_image_flow_is_exact_in_pixel_space tests/test_tfp_contract.py \
	tests/test_precision.py::test_bfloat16_density_is_exact_for_the_map_it_computes \
	tests/test_variational_dequantization.py::test_log_q_is_exact_against_a_brute_force_jacobian \
	tests/test_compat.py::test_onednn_enabled_follows_tf_enable_onednn_opts

# Most of the suite's time is one Python thread (tracing, eager dispatch, a subprocess's
# start-up), so two workers nearly halve it on two cores. Each worker takes whole files
# (--dist loadfile): a module's shared fixtures (a trained model, a run directory) are built once.
PYTEST := $(PY) -m pytest -q -n 2 --dist loadfile

# The docs site is built first (strictly: any warning fails); the suite then runs every code
# block of README.md and docs/ (tests/test_docs.py).
test: $(STAMP) fashion-mnist docs
	$(PY) -m ruff check tfp_flows tests experiments benchmarks examples docs
	TF_ENABLE_ONEDNN_OPTS=1 $(PYTEST)
	TF_ENABLE_ONEDNN_OPTS=0 $(PYTEST) $(PORTABILITY_TESTS) -k 'not training_command' \
		-m 'not kernel_independent'

# Every experiment of experiments/, about two and a half hours on 2 CPU cores
# (variational_dequantization.py alone is 14 CPU-minutes of training, then its check at equal
# steps about 4 more); Fashion-MNIST comes from
# Debian's dataset-fashion-mnist (installed here when missing; needs root and apt).
experiments: $(STAMP) fashion-mnist
	$(PY) experiments/toy_2d.py
	$(PY) experiments/fashion_mnist_nice_realnvp.py
	$(PY) experiments/glow_images.py
	$(PY) experiments/attribute_manipulation.py
	$(PY) experiments/maf_vs_iaf.py
	$(PY) experiments/serving_example.py
	$(PY) experiments/conditional_toy_2d.py
	$(PY) experiments/conditional_glow.py
	$(PY) experiments/vi_posterior.py
	$(PY) experiments/vi_stability.py
	$(PY) experiments/ffjord_two_moons.py
	$(PY) experiments/torus_von_mises.py
	$(PY) experiments/neutra_funnel.py
	$(PY) experiments/custom_flow.py
	$(PY) experiments/mirrored_vs_single.py
	$(PY) experiments/variational_dequantization.py
	$(PY) experiments/variational_dequantization.py --uniform_steps $$($(PY) -c "import json; \
	print(json.load(open('experiments/results/variational_dequantization.json'))['runs']\
	['variational']['steps'])")
	$(PY) experiments/mixture_base.py
	$(PY) experiments/precision_log_prob.py
	$(PY) experiments/precision_fashion_mnist.py

# The CPU benchmarks whose JSONs the docs cite, about an hour and a half on 2 CPU cores. On a
# machine with a GPU, `$(PY) -m benchmarks.bench --device gpu` adds the GPU rows.
benchmark: $(STAMP)
	$(PY) -m benchmarks.bench
	$(PY) -m benchmarks.bench --flows glow --glow-shape 32,32,3 --glow-levels 3 --glow-depth 8 \
		--glow-hidden 256 --fit-runs in_memory,in_memory_tfp --fit-rounds 2 --rounds 3 \
		--chunk 4 --reversible-depths '' \
		--out benchmarks/results/$$(date +%F)-cpu-glow-32x32.json
	$(PY) -m benchmarks.glow_ablations
	$(PY) -m benchmarks.public_api
	$(PY) -m benchmarks.pipeline
	$(PY) -m benchmarks.precision
	$(PY) -m benchmarks.precision --glow-shape 32,32,3 --glow-levels 3 --glow-depth 8 \
		--glow-hidden 256 --fit-rounds 2

# The GPU checks, under 10 minutes on one GPU: the tests marked `gpu` (two logical GPUs carved
# from one under MirroredStrategy against one device, in float32, float16 and with XLA; low
# precision Glow training with and without XLA) and the precision tests, then the GPU rows:
# the split-device check's JSON and the benchmark's throughput matrix (Glow 32x32x3, 3 scales
# x 8 steps, 512 hidden, batch 64; float32 / float16 x XLA off / on). Without a GPU it stops
# at once and says so (the CPU side of the split-device check runs in `make test`).
GPU_RESULTS := benchmarks/results/$(shell date +%F)-gpu
gpu: $(STAMP)
	@$(PY) -c "import sys, tensorflow as tf; sys.exit(0 if tf.config.list_physical_devices('GPU') else 'make gpu needs a GPU, and TensorFlow sees none on this machine; nothing was run.')"
	$(PY) -m pytest -q -m gpu tests/test_gpu.py
	$(PY) -m pytest -q tests/test_precision.py -k 'not training_command and not identity'
	$(PY) tests/split_devices.py GPU $(GPU_RESULTS)-split-devices.json
	$(PY) -m benchmarks.bench --device gpu --glow-depth 8 --fit-steps 20 --fit-rounds 3 \
		--out $(GPU_RESULTS)-matrix.json

lint: $(STAMP)
	$(PY) -m ruff check tfp_flows tests experiments benchmarks examples docs

# The documentation site into site/: MkDocs in strict mode, the API reference from docstrings.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) runs site
