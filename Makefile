# trailhouse: `make demo` and `make test` work on a fresh clone (they create .venv first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-cluster lint bench clean venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: venv
	$(VENV)/bin/trailhouse demo

test: venv
	$(PY) -m pytest -m "not cluster" $(PYTEST_ARGS)

test-cluster: venv
	$(PY) -m pytest -m cluster $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check include dags plugins tests

clean:
	rm -rf .trailhouse tests/artifacts
