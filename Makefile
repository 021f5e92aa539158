# The two entry points of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.eseg-installed

.PHONY: install test demo models clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

demo: $(STAMP)
	$(VENV)/bin/eseg train configs/demo.yaml --out runs/demo --exist-ok

models: $(STAMP)
	$(VENV)/bin/eseg models

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
