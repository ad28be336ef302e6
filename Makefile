# The two commands a newcomer runs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PYTEST_ARGS ?=

.PHONY: run test lint typecheck check venv dev migrate compute bench bench-ingest bench-ingest-single bench-compute bench-alerts bench-scale bench-spark bench-client client-size clean soak

$(BIN)/activate:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "lossmon needs Python 3.11+ (found %s)" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Runtime install, redone when pyproject.toml changes; the Python client
# (clients/python, imported by the demo) comes along.
$(VENV)/.installed: pyproject.toml setup.py clients/python/pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e . -e ./clients/python
	@touch $@

# Test tools on top, and the spark extra: its tests (real local Spark) run in `make test`.
$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test,spark]'
	@touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-test

## make run: set up and serve on http://127.0.0.1:8000 with the embedded SQLite database
run: $(VENV)/.installed
	$(BIN)/lossmon serve

## make test: set up, lint, type-check, then the suite on SQLite and PostgreSQL.
## Step 1 runs everything in parallel, including short forms of the soak tests; step 2
## runs alone what restarts the shared PostgreSQL server (it must not race other tests).
## Exit 5 ("nothing collected") is fine for step 2 when PYTEST_ARGS narrows the paths.
test: $(VENV)/.installed-test lint typecheck
	$(BIN)/pytest -n 2 -m "not serial" $(PYTEST_ARGS)
	$(BIN)/pytest -m serial -p no:xdist $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(VENV)/.installed-test
	$(BIN)/ruff check app tests bench migrations setup.py
	$(BIN)/ruff format --check app tests bench migrations setup.py
	cd clients/python && ../../$(BIN)/ruff check . && ../../$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy app
	cd clients/python && ../../$(BIN)/mypy --strict src

## make soak: the reliability soak tests in their large form (kills, PostgreSQL restart,
## 2 APIs + 2 workers); one at a time, figures printed. Sizes: SOAK_* variables.
soak: $(VENV)/.installed-test
	SOAK_KILLS_PER_DB=$${SOAK_KILLS_PER_DB:-150} $(BIN)/pytest -m soak -s -p no:xdist tests/soak

migrate: $(VENV)/.installed
	$(BIN)/lossmon migrate

compute: $(VENV)/.installed
	$(BIN)/lossmon compute

## Benchmarks (figures, not pass/fail). They need PostgreSQL at LOSSMON_BENCH_PG_URL
## (default postgresql://postgres@127.0.0.1:5432/postgres).
bench: bench-ingest bench-compute bench-alerts

bench-ingest: $(VENV)/.installed-test
	$(PY) bench/ingest.py

## Single-prediction POSTs with wrk (apt-get installs it if missing): lossmon serve vs a
## bare FastAPI + psycopg endpoint, 64 and 8 connections, 20 s each.
bench-ingest-single: $(VENV)/.installed-test
	$(PY) bench/ingest_single.py

bench-compute: $(VENV)/.installed-test
	$(PY) bench/compute.py

## make bench-scale: steady and late-label passes at 1M and 10M predictions of history,
## bytes per row, a retention run under load (heavy: ~15 min on 2 quiet cores; the retention
## part alone: .venv/bin/python bench/scale.py --only retention --sizes 10000000).
bench-scale: $(VENV)/.installed-test
	$(PY) bench/scale.py

bench-alerts: $(VENV)/.installed-test
	$(PY) bench/alerts.py

## make bench-client: the Logger's call overhead (server down) and records/s through the
## Logger vs raw Client.log_predictions batches, against a real `lossmon serve` (SQLite).
bench-client: $(VENV)/.installed-test
	$(PY) bench/client.py

## make client-size: what `pip install ./clients/python` brings into a fresh venv.
client-size: $(VENV)/.installed
	$(PY) bench/client_size.py

## make bench-spark: 20M predictions + 18M labels as Parquet through `lossmon spark compute`
## on local[2], a reference Spark job, and the PostgreSQL path on 2M of the same rows.
bench-spark: $(VENV)/.installed-test
	$(PY) bench/spark.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
