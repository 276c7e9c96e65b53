# Two entry points for a fresh machine: `make demo` and `make test`. Both create the virtual
# environment on first use (about two minutes) and reuse it afterwards.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint experiments benchmark clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check tfp_flows tests experiments benchmarks
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check tfp_flows tests experiments benchmarks

clean:
	rm -rf $(VENV) runs
