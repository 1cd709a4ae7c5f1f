# What people and CI run. `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help install test unit lint up demo bench measure schemas
help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

install: ## create the virtualenv with the test extras (which pull embedded and tools)
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[test]'

test: ## the whole suite (what CI runs: see .ci/run)
	bash scripts/test-deps.sh && python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[test]' && $(PY) -m pytest

unit: ## the tests that need no broker or Redis
	$(PY) -m pytest -m "not integration"

lint: ## ruff and mypy --strict
	$(VENV)/bin/pip install -q ruff mypy types-PyYAML && $(VENV)/bin/ruff check . && $(VENV)/bin/mypy

up: ## the embedded stack
	$(VENV)/bin/complaints up

demo: ## the embedded stack with demo traffic, deadlines shortened 600x
	$(VENV)/bin/complaints up --demo --sla-scale 600

bench: ## drive complaints through the running stack and print figures
	$(VENV)/bin/complaints bench --count 2000

measure: ## the classifier's precision and recall per code on the CFPB samples
	$(PY) -m tools.measure tests/data/cfpb/*.csv

schemas: ## re-export the JSON Schemas after changing a model
	$(VENV)/bin/complaints schemas export
