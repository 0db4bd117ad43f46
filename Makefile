PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
JS := tests/js
SYSTEM := bash .ci/install-system

.PHONY: venv run test lint format bench reliability image-test js system-test system-bench clean

# Prerequisites are listed in the order they must be made (system packages first).
.NOTPARALLEL:

# Two stamps, each recording its last install and redone when pyproject.toml changes:
# `make run` installs the runtime dependencies only; the dev extras (tests, lint, bench:
# pytest, Playwright, mypy, py-spy…) come on top, so `make run` after `make test`
# installs nothing and `make test` after `make run` adds just the extras.
$(VENV)/.runtime: pyproject.toml
	test -x $(BIN)/python || { $(SYSTEM) run && $(PY) -m venv $(VENV); }
	$(BIN)/python -m pip install --disable-pip-version-check -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@

venv: $(VENV)/.dev

# Apollo Client and its test runner (tests/js), reinstalled when the lock file changes.
$(JS)/node_modules/.installed: $(JS)/package.json $(JS)/package-lock.json
	npm ci --prefix $(JS) --no-audit --no-fund
	touch $@

js: $(JS)/node_modules/.installed

# redis-server, PostgreSQL, Chromium, Node (.ci/install-system has the one list).
system-test:
	$(SYSTEM) test

system-bench:
	$(SYSTEM) bench

# Seeds the demo SQLite database if missing, prints tokens, serves with GraphiQL.
run: $(VENV)/.runtime
	$(BIN)/gateway run

test: system-test venv js
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: system-bench venv
	$(BIN)/python -m bench.run

# Isolation, faults, bad input and a 10-minute soak against real processes (RELIABILITY.md);
# about 14 minutes on 2 cores. RELIABILITY_SOAK_S shortens the soak. Figures land in
# tests/reliability/results/, summed up in results/summary.md even when a check fails.
reliability: system-test venv
	$(BIN)/pytest -m reliability -q tests/reliability; status=$$?; \
	$(BIN)/python -m tests.reliability.report; exit $$status

# The container image (Containerfile) built here and run: seed, serve, worker, token and
# refresh against a real PostgreSQL and Redis (tests/deploy/test_image.py). The base image is
# built from Debian packages with debootstrap when it is missing (no image is pulled).
# About 9 minutes from nothing on 2 cores, under 3 after a code change (buildah keeps the
# base and the dependencies' layer); docs/operations.md, "Container image".
image-test: system-test venv
	$(SYSTEM) image
	bash deploy/image/build.sh
	$(BIN)/pytest -m image -q tests/deploy/test_image.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
