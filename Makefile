# Hearth: every target makes its own virtual environment on first use (python3 -m venv .venv)
# and reinstalls when pyproject.toml changes, so a fresh machine needs only `make demo`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO := demo-data
HOME_DATA ?= ../shared/data/open-smart-home

.PHONY: install demo test lint bench eval clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The hub on the embedded defaults: a starter config with simulated sensors, one simulated
# day (from 06:00 on a January morning) at 3600x, then what the buffer holds.
demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/hearth config init $(DEMO)/hub.toml --name "Demo flat" --data-dir $(DEMO)/data --simulated
	$(BIN)/hearth config check $(DEMO)/hub.toml
	$(BIN)/hearth run --config $(DEMO)/hub.toml --speed 3600 --for 24h --start 2026-01-15T06:00:00+00:00
	$(BIN)/hearth status --config $(DEMO)/hub.toml
	@echo
	@echo "== Replaying a real flat: Open Smart Home Data Set (Fraunhofer IBP, CC BY-SA 4.0)"
	@if [ -d $(HOME_DATA) ]; then \
	  $(BIN)/hearth replay $(HOME_DATA) --format series --db $(DEMO)/open-smart-home.db \
	    > $(DEMO)/open-smart-home-alerts.jsonl && \
	  echo "alert events (one JSON object each): $(DEMO)/open-smart-home-alerts.jsonl" && \
	  $(BIN)/hearth status --db $(DEMO)/open-smart-home.db; \
	else echo "($(HOME_DATA) not found: skipped)"; fi
	@echo
	@echo "Look further: $(BIN)/hearth status --config $(DEMO)/hub.toml --json"

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

clean:
	rm -rf $(VENV) $(DEMO) bench-results eval-results .pytest_cache .mypy_cache .ruff_cache .hypothesis
