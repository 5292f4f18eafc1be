# The two commands: `make demo` and `make test`. Each sets itself up on a fresh machine
# (a venv in .venv with the package and its test dependencies).
#
# `make check` is the fast loop while changing code (30 s at most on 2 cores): lint, format,
# mypy --strict and the unit tests that start no process, run no external tool and are not
# hypothesis-heavy (markers e2e, tools, slow: see pyproject.toml), on both cores. It needs
# no promtool, helm or prometheus. It does not replace `make test`, the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test check lint typecheck unit tools clean bench

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

# The whole suite in two runs: first everything not marked `timing` on both cores (files
# whole to one worker, so a module's processes start once), then the `timing` tests with
# nothing beside them: their real-time bounds (a scrape within its deadline, keys used
# before they expire) have too little slack to share the CPU. Both runs always run.
unit: $(STAMP) tools
	status=0; \
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not timing" || status=1; \
	$(BIN)/python -m pytest -m timing || status=1; \
	exit $$status

test: lint typecheck unit

check: lint typecheck
	$(BIN)/python -m pytest -q -n 2 -m "not e2e and not tools and not slow"

# API-call economy and serving cost against the simulator; writes bench/RESULTS.md.
# `make test` runs it in --quick mode (tests/tools/test_bench.py) so it cannot rot.
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
