# Two commands are the contract: `make run` and `make test`. Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

# The repository root is AIRFLOW_HOME; all generated state lives in ./state.
# The venv's bin comes first on PATH: `airflow standalone` starts its components by name.
export AIRFLOW_HOME := $(CURDIR)
export PATH := $(CURDIR)/$(BIN):$(PATH)
export AIRFLOW_CONN_CTPIPE_SOURCE ?= {"conn_type": "sqlite", "host": "$(CURDIR)/state/source.db"}

.PHONY: run test observability-tools lint lock airflow mlflow serve serve-features clean bench bench-gate bench-drift bench-serving

$(BIN)/.installed: requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(BIN)/.installed

## Run the main job on the embedded default: seed, then every DAG over the seeded days.
run: $(BIN)/.installed
	$(BIN)/python -m ctpipe.local_run $(ARGS)

# Prometheus (with promtool), Alertmanager (with amtool) and the Pushgateway, which the
# observability tests run for real: Debian's packages, installed quietly when missing and this
# is root; otherwise the command to run is printed (and those tests fail under CI=true).
OBSERVABILITY_PACKAGES := prometheus prometheus-alertmanager prometheus-pushgateway
OBSERVABILITY_TOOLS := prometheus promtool prometheus-alertmanager amtool prometheus-pushgateway
observability-tools:
	@missing=""; for tool in $(OBSERVABILITY_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing for the observability tests: apt-get install $(OBSERVABILITY_PACKAGES)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $(OBSERVABILITY_PACKAGES) >/dev/null; \
	  else \
	    echo "missing$$missing: the observability tests need them; as root, run: apt-get install $(OBSERVABILITY_PACKAGES)"; \
	  fi; \
	fi

## The whole test suite.
test: $(BIN)/.installed observability-tools
	$(BIN)/ruff check dags include feature_repo tests bench
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check dags include feature_repo tests bench
	$(BIN)/ruff format --check dags include feature_repo tests bench

## Re-resolve every pin from pyproject.toml's dependencies into requirements.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	{ echo "# Every package, pinned and resolved together from pyproject.toml's dependencies."; \
	  echo "# Regenerate with: make lock"; \
	  .lock-venv/bin/pip freeze --exclude-editable | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/'; } > requirements.txt
	rm -rf .lock-venv

## The Airflow UI (and scheduler) on the embedded default: http://localhost:8080
airflow: $(BIN)/.installed
	$(BIN)/airflow standalone

## The MLflow UI on the embedded default's tracking store: http://localhost:5000
mlflow: $(BIN)/.installed
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/state/mlflow/mlflow.db --port 5000

## The prediction service on the configured stores and registry: http://localhost:$(PORT)/docs
PORT ?= 8000
serve: $(BIN)/.installed
	$(BIN)/python -m ctpipe.serving --port $(PORT) $(ARGS)

## Feast's HTTP feature server on the configured stores: http://localhost:6566
serve-features: $(BIN)/.installed
	$(BIN)/python -m ctpipe.feature_store serve --port 6566

## Every benchmark, one table of ratios to a raw baseline (ARGS="--quick": a small smoke run;
## --only gate,drift_speed,...). The serving rows need `make run`'s state.
bench: $(BIN)/.installed
	$(BIN)/python -m bench $(ARGS)

## The GX gate against the same checks in plain pandas (400 to 1M rows), and its cost as history grows
bench-gate: $(BIN)/.installed
	$(BIN)/python -m bench.gate
	$(BIN)/python -m bench.gate_history

## The calibrated drift check's false-alarm and detection rates, over many generated datasets
bench-drift: $(BIN)/.installed
	$(BIN)/python -m bench.drift

## The prediction service against a raw baseline, and an alias swap under load (after make run)
bench-serving: $(BIN)/.installed
	$(BIN)/python -m bench.serving

clean:
	rm -rf state
