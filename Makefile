PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv run test lint format bench clean

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

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
