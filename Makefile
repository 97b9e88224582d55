# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv with the project and its dev extras the first time.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest catalogs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/smtp-guard demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/compile_catalogs.py --check

# Recompile the shipped gettext catalogs after editing a .po file.
catalogs: $(STAMP)
	$(BIN)/python scripts/compile_catalogs.py

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term

# Figures, printed (never asserted); the README's Figures section quotes them.
bench: $(STAMP)
	$(BIN)/python bench/classify.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage
