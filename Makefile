# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Everything installs into a project-local virtual environment with pip; the tests need
# the dask and server extras too (a Dask cluster, MLflow on PostgreSQL).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-integration test-fast lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,dask,server]'
	touch $(STAMP)

run: install
	$(BIN)/pdmlens run $(ARGS)

# test files run on this many processes at once (pytest-xdist; a file stays on one, in
# order): much of an end-to-end test is waiting for a server or a subprocess to start
WORKERS ?= 2

# the README's test command: lint, format, types and every test but the integration ones,
# the browser tests included
test: lint typecheck
	$(BIN)/python -m pytest -q -m "not integration" -n $(WORKERS) --dist loadfile $(PYTEST_ARGS)

# real servers, clusters and killed processes (Dask, PostgreSQL + MLflow server, Prefect
# server under pdmlens serve, faults); .ci/run runs it after `make test`. One at a time:
# their timings (retries, schedules, grace periods) are what they test
test-integration: install
	$(BIN)/python -m pytest -q -m integration $(PYTEST_ARGS)

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
