# The two entry points of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CORE := $(VENV)/.eseg-core
TEST := $(VENV)/.eseg-test

.PHONY: install test demo models claims clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The demo needs only the package; the tests add their oracles (torchmetrics, cityscapesscripts, onnxruntime, ...).
$(CORE): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $(CORE)

$(TEST): pyproject.toml $(CORE)
	$(PY) -m pip install -q -e '.[test]'
	touch $(TEST)

install: $(CORE)

test: $(TEST)
	$(PY) -m pytest -q -n 2

demo: $(CORE)
	$(VENV)/bin/eseg train configs/demo.yaml --out runs/demo --overwrite

models: $(CORE)
	$(VENV)/bin/eseg models

# docs/claims.md: the whole full preset at once (17 experiments x 3 seeds, hours on 2 CPU cores);
# in sittings: eseg reproduce --part seed0 --jobs 2 (then seed1, seed2), each resumable
claims: $(CORE)
	$(VENV)/bin/eseg reproduce --jobs 2

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
