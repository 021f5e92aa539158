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

# docs/claims.md: 5 experiments x 3 seeds, about 30 min on 2 CPU cores (28 min measured)
claims: $(CORE)
	$(VENV)/bin/eseg reproduce --jobs 2

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
