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

.PHONY: demo test check lint typecheck unit tools clean bench mixin

$(STAMP): pyproject.toml ci/venv.sh
	sh ci/venv.sh $(PYTHON) $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/alb-jobs-exporter --demo

# promtool and prometheus (Debian's `prometheus` package) are needed by tests; installed
# here when missing and we may (root + apt), otherwise the script says what to install.
tools:
	@sh ci/ensure-test-tools.sh

lint: $(STAMP)
	$(BIN)/ruff check exporter tests bench mixin
	$(BIN)/ruff format --check exporter tests bench mixin

typecheck: $(STAMP)
	$(BIN)/mypy --strict exporter

# The whole suite in three parts; each always runs, and the recipe fails if any failed:
# 1. everything not marked `timing` or `slow`, on both cores, a file to a worker (a module's
#    processes start once; `make check` runs the in-process part the same way);
# 2. then the `timing` tests, apart from the rest: their real-time bounds (a scrape within
#    its deadline, keys used before they expire) have too little slack to share the CPU with
#    CPU-bound tests. They mostly wait (hanging calls, expiring keys, Prometheus's scrape
#    interval), so two files run side by side, a file to a worker, and the fault suite is two
#    files (tests/e2e/faults/) so that neither worker waits for the other for long;
# 3. all along, the `slow` tests at the lowest priority, on the CPU the others leave idle
#    (the timing tests, a core most of the time): hypothesis, in-process and CPU-bound, with
#    no example deadline and no real-time bound but 10 s HTTP timeouts on loopback, so being
#    slowed down cannot fail them. Their output follows the rest.
unit: $(STAMP) tools
	log=$$(mktemp); status=0; \
	nice -n 19 $(BIN)/python -m pytest -p no:cacheprovider -m "slow and not timing" \
		>"$$log" 2>&1 & slow=$$!; \
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not timing and not slow" || status=1; \
	$(BIN)/python -m pytest -n 2 --dist loadfile -m timing || status=1; \
	wait $$slow || status=1; \
	echo "== the slow tests (run meanwhile at nice 19):"; cat "$$log"; rm -f "$$log"; \
	exit $$status

test: lint typecheck unit

# PYTHONDONTWRITEBYTECODE set empty: where the environment sets it (this machine does),
# every run would compile the package again and pytest would rewrite every test module's
# asserts again, about 6 s of a worker's start; the caches go in __pycache__ (git-ignored).
check: lint typecheck
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n 2 -m "not e2e and not tools and not slow"

# API-call economy and serving cost against the simulator; writes bench/RESULTS.md.
# `make test` runs it in --quick mode (tests/tools/test_bench.py) so it cannot rot.
# The scale curve goes to 1,000 targets: about 17 minutes on 2 vCPU.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The alert rules and the dashboard are generated: edit mixin/*.libsonnet, then run this to
# rewrite helm/alb-jobs-exporter/files/{alerts.yaml,dashboard.json} (tests check they match).
mixin: $(STAMP)
	$(BIN)/python mixin/render.py

clean:
	rm -rf $(VENV) .uv .pytest_cache .mypy_cache .ruff_cache .hypothesis
