# trailhouse: `make demo` and `make test` work on a fresh clone (they create .venv first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-long test-cluster reliability lint bench clean venv sanitize

venv: $(STAMP)

# setup.py builds the C column builder (include/trailhouse/ingest/_fastjson.c) in place: gcc and the
# Python headers are needed, as for any package that compiles.
$(STAMP): requirements.txt pyproject.toml setup.py include/trailhouse/ingest/_fastjson.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: venv
	$(VENV)/bin/trailhouse demo

test: venv browser typecheck
	$(PY) -m pytest -m "not cluster" $(PYTEST_ARGS)

# mypy over include/ (settings in pyproject.toml): part of make test and make lint.
.PHONY: typecheck
typecheck: venv
	$(VENV)/bin/mypy

# Debian's Chromium for the web UI's browser tests (tests/web/test_browser.py drives it with
# Playwright; Playwright's own browser download cannot work here).
.PHONY: browser
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

test-long: venv
	TRAILHOUSE_FAULTS=all $(PY) -m pytest -m "not cluster" $(PYTEST_ARGS)

reliability: venv
	$(PY) -m trailhouse.dev.faultsuite --out docs/reliability.md
	$(PY) -m trailhouse.dev.envfaults --out docs/reliability.md

test-cluster: venv
	$(PY) -m pytest -m cluster $(PYTEST_ARGS)

# The C column builder's tests under AddressSanitizer and UBSan (any finding aborts the run).
SANITIZE_TESTS ?= tests/include/ingest/test_fastjson.py tests/include/ingest/test_transform.py tests/include/ingest/test_records.py
sanitize: venv
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(PY) tests/sanitize.py -q $(SANITIZE_TESTS)

lint: venv typecheck
	$(VENV)/bin/ruff check include dags plugins tests

# Benchmarks (docs/performance.md): make bench BENCH_ARGS="--events 200000 --query-events 2000000"
bench: venv
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf .trailhouse tests/artifacts
