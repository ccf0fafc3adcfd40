# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Everything installs into a project-local virtual environment with pip; the tests need
# the dask and server extras too (a Dask cluster, MLflow on PostgreSQL).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,dask,server]'
	touch $(STAMP)

run: install
	$(BIN)/pdmlens run $(ARGS)

test: install
	$(BIN)/ruff check src pipelines tests benchmarks
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src pipelines tests benchmarks
	$(BIN)/ruff format --check src pipelines tests benchmarks

bench: install
	$(BIN)/python benchmarks/data.py
	$(BIN)/python benchmarks/explain.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
