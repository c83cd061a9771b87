# Local development: `make help` lists the targets. Everything runs from .venv, which `venv` keeps
# in step with the requirement files; settings come from the environment or .env (see .env.example).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Touched after a successful install: pip runs again only when a requirement file is newer.
STAMP := $(VENV)/.requirements-installed
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test lint fmt bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-7s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: PYTHON=$(PYTHON) (creates .venv), PYTEST_ARGS='...' (pytest), BENCH_ARGS='...' (bench)"

venv: $(STAMP) ## Create .venv and install requirements-dev.txt (again only when requirements change)

$(PY):
	@$(PYTHON) -m venv $(VENV) || { \
		rm -rf $(VENV); \
		echo "Could not create $(VENV) with '$(PYTHON) -m venv'; on Debian/Ubuntu: apt-get install python3-venv" >&2; \
		exit 1; }

$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $@

run: venv ## Migrate, seed the demo data and run web, worker, beat and the fake provider (Ctrl-C stops all)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py ensure_demo_admin
	$(PY) manage.py seed_demo
	exec scripts/run_local.sh

test: venv ## Run the tests (SQLite by default; set DATABASE_URL for PostgreSQL)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: venv ## Check lint and formatting with ruff, and the import boundaries with import-linter
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

fmt: venv ## Format the code and apply ruff's safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv ## Run the benchmark (python -m bench; BENCH_ARGS=--help for its options)
	$(PY) -m bench $(BENCH_ARGS)

clean: ## Remove runtime state under var/ (database, broker, cache, static); keeps .venv
	rm -rf var/
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
