# The two commands a person needs: `make run` (the demo) and `make test`.
# Every target creates .venv and installs what it needs; a second call installs nothing
# (the stamp file is newer than pyproject.toml).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
# `make run` serves on $(HTTP) with its files under $(WORKDIR): `make run HTTP=127.0.0.1:8090
# WORKDIR=var2` runs a second copy beside the first.
HTTP    ?= 127.0.0.1:8088
WORKDIR ?= var
# The chart library and the API docs page's assets (npm, pinned in package-lock.json), vendored
# where the UI is served from. They are committed beside their licences, so every way of
# installing (a clone, `pip install .`, the wheel, the sdist) serves them with no network;
# `make ui` refreshes them from npm after a change of package.json.
UI_DIR    := src/fxconnector/ui/web
UI_VENDOR := $(UI_DIR)/vendor
CHARTS    := $(UI_DIR)/node_modules/lightweight-charts
SWAGGER   := $(UI_DIR)/node_modules/swagger-ui-dist
CHROMIUM  := /usr/bin/chromium
NGINX     := /usr/sbin/nginx

# Python 3.7 with numpy (what ForexConnect needs) for the fxcm bridge's history tests under
# 3.7; without a python3.7 those tests skip and say why.
PYTHON37 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.7*/bin/python3.7) $(shell command -v python3.7))
VENV37_STAMP := .venv37/.installed

.PHONY: run test check bench fmt clean venv ui

venv: $(STAMP) $(VENV37_STAMP)

$(VENV37_STAMP):
	@if [ -n "$(PYTHON37)" ]; then \
		($(PYTHON37) -m venv .venv37 && \
		.venv37/bin/python -m pip install --quiet --disable-pip-version-check 'numpy<1.22' && \
		touch $@) || echo "could not build .venv37: the fxcm bridge history tests will skip"; \
	else echo "no python3.7: the fxcm bridge history tests under 3.7 will skip"; fi

ui:
	cd $(UI_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	mkdir -p $(UI_VENDOR)
	cp $(CHARTS)/LICENSE $(UI_VENDOR)/LICENSE.lightweight-charts
	cp $(CHARTS)/dist/lightweight-charts.standalone.production.js $(UI_VENDOR)/
	cp $(SWAGGER)/LICENSE $(UI_VENDOR)/LICENSE.swagger-ui-dist
	cp $(SWAGGER)/NOTICE $(UI_VENDOR)/NOTICE.swagger-ui-dist
	cp $(SWAGGER)/swagger-ui-bundle.js.LICENSE.txt $(UI_VENDOR)/
	cp $(SWAGGER)/swagger-ui-bundle.js $(SWAGGER)/swagger-ui.css $(UI_VENDOR)/
	cp $(SWAGGER)/favicon-32x32.png $(UI_VENDOR)/

# Debian's chromium for the browser tests (tests/ui); without it (not root, no network) they
# skip and say why.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "could not install chromium: the browser tests will skip"; \
	else echo "chromium is missing and this is not root: the browser tests will skip"; fi

# Debian's nginx for the deploy tests (tests/deploy: the site in deploy/nginx in front of a real
# connector); without it they skip and say why. The tests start their own nginx on a free port.
$(NGINX):
	@if [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) \
		|| echo "could not install nginx: the nginx deploy test will skip"; \
	else echo "nginx is missing and this is not root: the nginx deploy test will skip"; fi

# Debian's wrk, the load generator of the HTTP bench (bench/bench_http.py); without it the bench
# drives the server from its own asyncio client and says so.
WRK := /usr/bin/wrk
$(WRK):
	@if [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) \
		|| echo "could not install wrk: the HTTP bench uses its asyncio client"; \
	else echo "wrk is missing and this is not root: the HTTP bench uses its asyncio client"; fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@touch $@

# The connector, and the execution process (paper orders) as its supervised child
# (`--with-exec`: docs/execution.md); Ctrl-C stops both.
run: $(STAMP)
	$(BIN)/fxconnector run --profile demo --workdir '$(WORKDIR)' --http '$(HTTP)' --with-exec

test: $(STAMP) $(VENV37_STAMP) $(CHROMIUM) $(NGINX)
	$(BIN)/python -m pytest
	node --test tests/ui/

check: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(BENCH_STAMP) $(WRK)
	$(BIN)/python -m bench

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(UI_DIR)/node_modules
