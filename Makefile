# `make run` and `make test` do every set-up step on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
HOST   ?= 127.0.0.1
PORT   ?= 8000
export HOST PORT

.PHONY: run test install services migrate demo lint schema clean browser assets audit-tools

run: install services migrate
	@# Before touching the demo user: a server already there keeps its browsers signed in.
	@$(BIN)/sessions-api serve --check-port >/dev/null
	@echo "The page: http://$(HOST):$(PORT)/  (open the link below to sign in as the demo user)"
	@$(BIN)/sessions-api demo
	@echo "Serving on http://$(HOST):$(PORT)  (GraphiQL: http://$(HOST):$(PORT)/graphql; Ctrl-C stops)"
	@$(BIN)/sessions-api serve

test: install services browser audit-tools lint
	$(BIN)/python -m pytest

# The browser tests (tests/web/) drive Debian's Chromium; its emoji font draws the flags.
browser:
	@command -v chromium >/dev/null && fc-list 2>/dev/null | grep -qi 'noto color emoji' || { \
		echo "installing chromium with apt-get"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-noto-color-emoji >/dev/null; }

# The GraphQL-over-HTTP audit the tests run (tests/graphql_http_audit/, pinned by its lock file).
audit-tools: tests/graphql_http_audit/node_modules/.package-lock.json

tests/graphql_http_audit/node_modules/.package-lock.json: tests/graphql_http_audit/package-lock.json
	@command -v npm >/dev/null || { \
		echo "installing nodejs and npm with apt-get"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	cd tests/graphql_http_audit && npm ci --no-audit --no-fund --loglevel=error

# Rebuilds the page's map (sessions_http/static/panel/world-110m.json) and the tests' axe-core
# (tests/web/axe.min.js), both committed, from web/panel/ with npm; nothing else needs npm.
assets:
	cd web/panel && npm ci --no-audit --no-fund && npm run build

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
		echo "installing python3-venv with apt-get"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test,otel]'
	@touch $@

services: install
	@scripts/ensure-services

migrate: services
	@$(BIN)/sessions-api migrate

demo: migrate
	@$(BIN)/sessions-api demo

lint: install
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy

schema: install
	$(BIN)/sessions-api export-schema

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
