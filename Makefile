PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv run test lint format bench reliability clean

venv: $(VENV)/.installed

# Reinstall whenever pyproject.toml changes; the stamp records the last install.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@

# Seeds the demo SQLite database if missing, prints tokens, serves with GraphiQL.
run: venv
	$(BIN)/gateway run

test: venv
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv
	$(BIN)/python -m bench.run

# Isolation, faults, bad input and a 10-minute soak against real processes (RELIABILITY.md);
# about 14 minutes on 2 cores. RELIABILITY_SOAK_S shortens the soak. Figures land in
# tests/reliability/results/, summed up in results/summary.md even when a check fails.
reliability: venv
	$(BIN)/pytest -m reliability -q tests/reliability; status=$$?; \
	$(BIN)/python -m tests.reliability.report; exit $$status

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
