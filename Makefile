# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Everything installs into a project-local virtual environment with pip; the tests need
# the dask and server extras too (a Dask cluster, MLflow on PostgreSQL).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,dask,server]'
	touch $(STAMP)

run: install
	$(BIN)/pdmlens run $(ARGS)

# the README's test command (CI runs it through .ci/run): lint, format, types, every test
test: lint typecheck
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# the inner loop: lint and the tests that neither train a full pipeline nor start servers
test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src pipelines tests benchmarks
	$(BIN)/ruff format --check src pipelines tests benchmarks

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/data.py
	$(BIN)/python benchmarks/explain.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
