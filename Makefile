# mssql2pg — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed ## create .venv and install the package with dev tools

test: install ## run the whole test suite with coverage (fails under 80%)
	$(PY) -m tools.run_tests

lint: install ## ruff lint + format check, mypy strict, licence audit, bandit, SQL-building check
	$(VENV)/bin/ruff check src tests tools bench
	$(VENV)/bin/ruff format --check src tests tools bench
	$(VENV)/bin/mypy
	$(PY) -m tools.license_audit
	$(PY) -m tools.bandit_gate
	$(PY) -m tools.sql_lint

format: install ## apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix src tests tools bench
	$(VENV)/bin/ruff format src tests tools bench

demo: install ## run the pipeline end to end on a throwaway local PostgreSQL
	$(VENV)/bin/mssql2pg demo

bench: install ## measure throughput, lag and memory against a same-run PostgreSQL baseline
	$(PY) -m bench.run

.PHONY: help install test lint format demo bench
