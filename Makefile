# Local development: `make help` lists the targets. Everything runs from .venv, which `venv` keeps
# in step with the requirement files; settings come from the environment or .env (see .env.example).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Touched after a successful install: pip runs again only when a requirement file is newer.
STAMP := $(VENV)/.requirements-installed
PYTEST_ARGS ?=
BENCH_ARGS ?=
PIP := $(PY) -m pip --disable-pip-version-check
# Wheels of exactly these requirements for this Python, kept outside the checkout: a fresh clone then
# installs from them without asking any index, so pip spends no time resolving against one.
REQUIREMENTS_KEY := $(shell { $(PYTHON) -V; cat requirements.txt requirements-dev.txt; } 2>&1 | sha256sum | cut -c1-16)
WHEELHOUSE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mailing-service/wheels-$(REQUIREMENTS_KEY)
# Progress lines of `venv` and `run`: "==> [seconds since make started] what happens next".
STARTED := $(shell date +%s)
say = echo "==> [$$(($$(date +%s) - $(STARTED)))s] $(1)"
step = @$(say)

.DEFAULT_GOAL := help
.PHONY: help venv run test lint fmt bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-7s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: PYTHON=$(PYTHON) (creates .venv), PYTEST_ARGS='...' (pytest), BENCH_ARGS='...' (bench),"
	@echo "  WHEELHOUSE=$(WHEELHOUSE) (wheels kept for the next install)"

venv: $(STAMP) ## Create .venv and install requirements-dev.txt (again only when requirements change)

$(PY):
	$(call step,creating $(VENV) with $(PYTHON) -m venv)
	@$(PYTHON) -m venv $(VENV) || { \
		rm -rf $(VENV); \
		echo "Could not create $(VENV) with '$(PYTHON) -m venv'; on Debian/Ubuntu: apt-get install python3-venv" >&2; \
		exit 1; }

$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	@test -d $(WHEELHOUSE) || { \
		$(call say,collecting the wheels of requirements-dev.txt into $(WHEELHOUSE)); \
		$(PIP) wheel -r requirements-dev.txt -w $(WHEELHOUSE).partial-$$$$ && \
		{ test -d $(WHEELHOUSE) || mv $(WHEELHOUSE).partial-$$$$ $(WHEELHOUSE); rm -rf $(WHEELHOUSE).partial-$$$$; }; }
	$(call step,installing them into $(VENV))
	$(PIP) install --no-compile --no-index --find-links $(WHEELHOUSE) -r requirements-dev.txt || { \
		echo "pip could not install from $(WHEELHOUSE): remove it and try again" >&2; exit 1; }
	@touch $@
	$(call step,$(VENV) is ready)

run: venv ## Migrate, seed the demo data and run the Procfile: web, worker, beat, fake provider (Ctrl-C stops all)
	$(call step,migrating the database and seeding demo clients and a demo mailing)
	$(PY) manage.py setup_demo
	$(call step,starting the Procfile's services; the login and token follow once they answer)
	RUN_STARTED_AT=$(STARTED) exec $(PY) -m scripts.run_local

test: venv ## Run the tests (SQLite by default; set DATABASE_URL for PostgreSQL)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: venv ## Check lint and formatting with ruff, the import boundaries with import-linter, types with mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

fmt: venv ## Format the code and apply ruff's safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv ## Run the benchmark (python -m bench; BENCH_ARGS=--help for its options)
	$(PY) -m bench $(BENCH_ARGS)

clean: ## Remove runtime state under var/ (database, broker, cache, static); keeps .venv
	rm -rf var/
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
