# The two commands: `make demo` and `make test`. Each sets itself up on a fresh machine
# (a venv in .venv with the package and its test dependencies).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit tools clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/alb-jobs-exporter --demo

# promtool and prometheus (Debian's `prometheus` package) are needed by tests; installed
# here when missing and we may (root + apt), otherwise the script says what to install.
tools:
	@sh ci/ensure-test-tools.sh

lint: $(STAMP)
	$(BIN)/ruff check exporter tests bench
	$(BIN)/ruff format --check exporter tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict exporter

unit: $(STAMP) tools
	$(BIN)/python -m pytest

test: lint typecheck unit

# API-call economy and serving cost against the simulator; writes bench/RESULTS.md.
# `make test` runs it in --quick mode (tests/tools/test_bench.py) so it cannot rot.
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
