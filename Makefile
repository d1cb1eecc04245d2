# Hearth: every target makes its own virtual environment on first use (python3 -m venv .venv)
# and reinstalls when pyproject.toml changes, so a fresh machine needs only `make demo`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO := demo-data
HOME_DATA ?= ../shared/data/open-smart-home

.PHONY: install demo test lint bench eval soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The whole flow on the embedded defaults: a council service on loopback (SQLite), admin
# token and one-time enrollment codes, a simulated flat enrolled and living one day at 3600x
# while it syncs, the real Open Smart Home flat replayed and synced, then what arrived.
demo: $(STAMP)
	$(BIN)/python -m provisioning.demo --out $(DEMO) --home-data $(HOME_DATA)

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	drivers/firmware/check.sh

bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks.run

# The anomaly checks on 12 simulated homes x 90 days with labelled anomalies, plus the real
# Open Smart Home flat; prints the table and writes eval-results/report.{txt,json} (~3 min).
eval: $(STAMP)
	$(BIN)/python -m hub.evaluation --homes 12 --days 90 --seed 1 --out eval-results

# A simulated week of the hub: SIGTERM and SIGKILL restarts, council outages, RSS sampled
# throughout, exactly-once checked at the end; prints the curve, writes soak-results/soak.json (~5 min).
soak: $(STAMP)
	$(BIN)/python -m tests.soak --days 7 --out soak-results

clean:
	rm -rf $(VENV) $(DEMO) bench-results eval-results soak-results .pytest_cache .mypy_cache .ruff_cache .hypothesis
